"""How BlazePose's person box relates to the box of a person's joints (the box a pose model was trained on):
the constants of dunet.api.DETECTOR_BOX["blazepose"].

    .venv/bin/python bench/pose_box.py [--lsp 900] [--lspet 1000]

People: the LSP training people that the shipped pose models do not hold out (split_seed 0, 10 %: the held-out
100 are left for bench/pose_wild.py) and the first LSPET people with at least 10 labelled joints. Each image
is padded with black by a quarter of its long side on every side first: LSP images are cut close around the
person, and the detector's body square, clipped to such an image, would be smaller than the one it gives for
a person in a larger photo. A person is found by the most confident box holding >= 80 % of its labelled joints
whose long side is 0.5-3x the joints' box's (as bench/person_detect.py). Prints and writes, to
bench/results/pose_box_<cpu>.json: the median long side of the detector's box over the long side of the
joints' box, and the median offset of the joints' box centre from the detector box's centre, in joints' box
sides.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _timing import results_file  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PAD = 0.25  # of the image's long side, on every side


def training_people(lsp: int, lspet: int) -> list[tuple[Path, np.ndarray]]:
    """(image, labelled joints) of the LSP people not held out, then of LSPET people."""
    from person_detect import people  # bench/ is on sys.path when run as a script

    from dunet.engine.trainer import split_indices

    everyone = people(DATA / "lsp", "lsp")
    train, _ = split_indices(len(everyone), 0.1, 0)
    chosen = [everyone[i] for i in train][:lsp]
    return chosen + [p for p in people(DATA / "lspet", "lspet") if len(p[1]) >= 10][:lspet]


def found_box(boxes, joints: np.ndarray):
    lo, hi = joints.min(0), joints.max(0)
    for x, y, w, h in boxes:
        inside = ((joints >= [x, y]) & (joints <= [x + w, y + h])).all(1).mean()
        if inside >= 0.8 and 0.5 <= max(w, h) / max(*(hi - lo), 1.0) <= 3:
            return x, y, w, h
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsp", type=int, default=900)
    parser.add_argument("--lspet", type=int, default=1000)
    args = parser.parse_args()

    import cv2

    from dunet.data.images import load_image
    from dunet.runtime.cpu import cpu_name
    from dunet.runtime.detect import detect_people

    cv2.setNumThreads(1)
    ratios, offsets, missed = [], [], 0
    chosen = training_people(args.lsp, args.lspet)
    for path, joints in chosen:
        image = load_image(path)
        pad = int(PAD * max(image.shape[:2]))
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        box = found_box(detect_people(padded), joints + pad)
        if box is None:
            missed += 1
            continue
        x, y, w, h = box
        lo, hi = joints.min(0) + pad, joints.max(0) + pad
        side = max(*(hi - lo), 1.0)
        ratios.append(max(w, h) / side)
        offsets.append(((lo + hi) / 2 - [x + w / 2, y + h / 2]) / side)
    result = {"cpu": cpu_name(), "people": len(chosen), "found": len(ratios), "missed": missed, "pad": PAD,
              "side_ratio": round(float(np.median(ratios)), 3),
              "centre_offset": np.median(offsets, axis=0).round(3).tolist(),
              "side_ratio_quartiles": np.percentile(ratios, [25, 75]).round(3).tolist(),
              "command": f"python bench/pose_box.py --lsp {args.lsp} --lspet {args.lspet}"}
    print(json.dumps(result))
    out = results_file("pose_box")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
