"""Where a face model's error is, and what a second pass gives, on the 121 held-out 300-W faces.

    .venv/bin/python bench/face_errors.py [--models 300w-dunet2-w80 300w-dunet2-192]

For each model: NME-io per landmark group (jaw, brows, nose, eyes, lips: their mean and their share of the
total) and per source database (AFW, HELEN: the file name's prefix), the median face and the worst, all with
the landmark box; then a second pass, in the landmark box of the first pass's points, from the landmark box
and from the shipped detector's (BlazeFace) box, and the average of the two passes. With several models, the
NME-io of their points averaged: what is left when the models' own errors cancel. 1 thread. Prints a table
and writes bench/results/face_errors.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _timing import machine  # bench/ is on sys.path when run as a script
from peers import REPO, best_box, held_out_faces, points_box


def nme_per_point(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """(N, K) error of every point, in % of its face's inter-ocular distance."""
    return 100 * np.linalg.norm(pred - gt, axis=2) / norm[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"300w:{REPO.parent / 'shared' / 'data' / '300w'}")
    parser.add_argument("--models", nargs="+", default=["300w-dunet2-w80", "300w-dunet2-192"])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "face_errors.json"))
    args = parser.parse_args()

    import dunet
    from dunet.api import landmark_box

    samples, images, gt, norm = held_out_faces(args.data)
    sources = np.array([Path(s.image_path).name.split("_")[0] for s in samples])
    truth_boxes = [points_box(p) for p in gt]
    result = {"benchmark": "face model error by landmark group, and a second pass", "data": args.data,
              "faces": len(images), "machine": machine(), "models": {}}
    first_passes = []
    for model in args.models:
        landmarker = dunet.load(model, threads=1, detect_faces=False)
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(landmarker.names):
            groups.setdefault(name.rsplit("_", 1)[0], []).append(i)

        def run(boxes):
            return np.stack([landmarker.predict(im, box=b).points for im, b in zip(images, boxes)])

        first = run(truth_boxes)
        first_passes.append(first)
        err = nme_per_point(first, gt, norm)
        per_face = err.mean(axis=1)
        row = {"nme_io": round(float(err.mean()), 3), "median_face": round(float(np.median(per_face)), 3),
               "worst_face": round(float(per_face.max()), 3),
               "sources": {src: {"faces": int((sources == src).sum()),
                                 "nme_io": round(float(per_face[sources == src].mean()), 3)}
                           for src in sorted(set(sources))},
               "groups": {g: {"nme_io": round(float(err[:, idx].mean()), 3),
                              "share": round(float(err[:, idx].sum() / err.sum()), 3)} for g, idx in groups.items()}}
        print(f"{model}: NME-io {row['nme_io']:.2f} %, median face {row['median_face']:.2f} %, "
              f"worst {row['worst_face']:.2f} %; "
              + ", ".join(f"{src} {v['nme_io']:.2f} % ({v['faces']} faces)" for src, v in row["sources"].items()))
        print(f"  {'group':<12}{'NME-io %':>9}{'share':>7}")
        for g, v in row["groups"].items():
            print(f"  {g:<12}{v['nme_io']:>9.2f}{v['share']:>7.0%}")
        detected = [best_box([landmark_box(b) for b in landmarker.detect(im)], t) or t  # a miss: the true box
                    for im, t in zip(images, truth_boxes)]
        row["passes"] = {}
        for start, boxes in (("landmark box", truth_boxes), ("BlazeFace box", detected)):
            one = first if boxes is truth_boxes else run(boxes)
            two = run([points_box(p) for p in one])
            row["passes"][start] = {name: round(float(nme_per_point(p, gt, norm).mean()), 3)
                                    for name, p in (("one", one), ("two", two), ("average", (one + two) / 2))}
            v = row["passes"][start]
            print(f"  from the {start}: one pass {v['one']:.2f} %, two passes {v['two']:.2f} %, "
                  f"their average {v['average']:.2f} %")
        result["models"][model] = row
    if len(first_passes) > 1:
        result["models_averaged"] = round(float(nme_per_point(np.mean(first_passes, axis=0), gt, norm).mean()), 3)
        print(f"the {len(first_passes)} models' points averaged: NME-io {result['models_averaged']:.2f} %")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
