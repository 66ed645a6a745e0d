"""Person detectors on real people: recall, false positives and time per image, 1 thread.

    .venv/bin/python bench/person_detect.py [--lsp 1000] [--scenes 150] [--seed 0] [--detectors NAME...]

Two sets, both from ../shared/data (fixed seed):
- LSP: the plain LSP images (person-centred crops, im0001-im1000; about 100-200 px tall).
- Scenes: 1280x960 pictures with 1-3 LSPET people pasted in (their whole image, so with its own background),
  half of the people sized so that the scene is 1.5-2.5x taller than their image, half 100-400 px tall
  (joint box height), on a background that is either another LSPET image blurred and tiled or a plain
  texture (noise, gradient).
A person is found by a box that holds >= 80 % of the person's labelled joints and whose long side is 0.5-3x
the long side of the joints' box (so that a box the size of the whole picture does not count), matched one
box to one person, most confident box first. Also given: recall at IoU >= 0.5 with the joints' box (strict
for boxes that hold a whole person with a margin, as both detectors' do). A false positive is a box that
matches nobody; LSP images sometimes show other, unlabelled people, which count as false positives here.
box/j: the median long side of a finding box over the long side of the person's joints' box.
Prints a table and writes bench/results/person_detect_<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from _timing import machine  # bench/ is on sys.path when run as a script

from dunet.runtime import detect

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SCENE_W, SCENE_H = 1280, 960
SIZE_BINS = ((0, 100), (100, 200), (200, 400), (400, 10_000))  # person height in px (joints' box)


def people(folder: Path, layout: str):
    """(image path, (K, 2) labelled joints) of an LSP-style folder."""
    from dunet.data.readers import read_lsp

    source = read_lsp(folder, layout=layout)
    return [(s.image_path, s.keypoints[s.visible > 0]) for s in source.samples]


def background(rng, lspet, load_image) -> np.ndarray:
    import cv2

    if rng.random() < 0.5:  # a photo without recognisable people: blurred hard, tiled 2x2 with flips
        image = load_image(lspet[rng.integers(len(lspet))][0])
        tile = cv2.GaussianBlur(cv2.resize(image, (SCENE_W // 2, SCENE_H // 2)), (0, 0), 12)
        return np.concatenate([np.concatenate([tile, tile[:, ::-1]], 1)] * 2, 0)[: SCENE_H, : SCENE_W].copy()
    gradient = np.linspace(rng.integers(0, 255, 3), rng.integers(0, 255, 3), SCENE_W)[None]
    noise = rng.normal(0, rng.uniform(2, 20), (SCENE_H, SCENE_W, 1))
    return np.clip(gradient + noise, 0, 255).astype(np.uint8)


def scene(rng, lspet, load_image) -> tuple[np.ndarray, list[np.ndarray]]:
    """A 1280x960 scene with 1-3 pasted people, and each person's joints in scene pixels."""
    import cv2

    canvas = background(rng, lspet, load_image)
    taken, truths = [], []
    for _ in range(rng.integers(1, 4)):
        path, joints = lspet[rng.integers(len(lspet))]
        image = load_image(path)
        height = joints[:, 1].max() - joints[:, 1].min()
        if rng.random() < 0.5:
            factor = SCENE_H / rng.uniform(1.5, 2.5) / image.shape[0]
        else:
            factor = rng.uniform(100, 400) / max(height, 1.0)
        w, h = int(image.shape[1] * factor), int(image.shape[0] * factor)
        if not (8 < w < SCENE_W and 8 < h < SCENE_H):
            continue
        for _ in range(50):  # a place that overlaps no pasted person
            x, y = int(rng.integers(0, SCENE_W - w)), int(rng.integers(0, SCENE_H - h))
            if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for a, b, c, d in taken):
                break
        else:
            continue
        canvas[y: y + h, x: x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        taken.append((x, y, w, h))
        truths.append(joints * factor + [x, y])
    return canvas, truths


def match(boxes, truths) -> tuple[list[bool], list[bool], int, list[float]]:
    """Per person: found (joints criterion), found (IoU >= 0.5); the boxes that matched nobody; and for each
    found person, the long side of its box over the long side of its joints' box."""
    found, by_iou, used, used_iou, ratios = [False] * len(truths), [False] * len(truths), set(), set(), []
    for b, (x, y, w, h) in enumerate(boxes):
        for t, joints in enumerate(truths):
            lo, hi = joints.min(0), joints.max(0)
            inside = ((joints >= [x, y]) & (joints <= [x + w, y + h])).all(1).mean()
            ratio = max(w, h) / max(*(hi - lo), 1.0)
            if not found[t] and b not in used and inside >= 0.8 and 0.5 <= ratio <= 3:
                found[t] = True
                used.add(b)
                ratios.append(ratio)
            ix = max(0.0, min(x + w, hi[0]) - max(x, lo[0]))
            iy = max(0.0, min(y + h, hi[1]) - max(y, lo[1]))
            union = w * h + (hi - lo).prod() - ix * iy
            if not by_iou[t] and b not in used_iou and ix * iy / max(union, 1e-9) >= 0.5:
                by_iou[t] = True
                used_iou.add(b)
    return found, by_iou, len(boxes) - len(used), ratios


def measure(detect, images, truths) -> dict:
    found, by_iou, heights, false_pos, times, ratios = [], [], [], [], [], []
    detect(images[0])  # warm-up: network loading
    for image, people_here in zip(images, truths):
        start = time.perf_counter()
        boxes = detect(image)
        times.append(time.perf_counter() - start)
        hit, hit_iou, extra, box_ratios = match(boxes, people_here)
        ratios += box_ratios
        found += hit
        by_iou += hit_iou
        false_pos.append(extra)
        heights += [float(np.ptp(j[:, 1])) for j in people_here]
    found, by_iou, heights = np.array(found), np.array(by_iou), np.array(heights)
    by_size = {f"{lo}-{hi}px": {"people": int(sel.sum()), "recall": float(found[sel].mean()) if sel.any() else None}
               for lo, hi in SIZE_BINS for sel in [(heights >= lo) & (heights < hi)]}
    return {"images": len(images), "people": len(found), "recall": float(found.mean()),
            "recall_iou50": float(by_iou.mean()), "false_positives_per_image": float(np.mean(false_pos)),
            "ms_per_image": 1000 * float(np.median(times)), "recall_by_height": by_size,
            "box_side_over_joints_side": float(np.median(ratios)) if ratios else None}


# The shipped detectors; BlazePose also on the whole image only (no squares), without the squares of two thirds
# (the default until they were measured here), and with squares of a third too.
CANDIDATES = {
    "blazepose": lambda image: detect.detect_people(image, threads=1),
    "blazepose-whole": lambda image: detect.detect_people(image, tiles=(), threads=1),
    "blazepose-1,2": lambda image: detect.detect_people(image, tiles=(1, 2), threads=1),
    "blazepose-1,1.5,2,3": lambda image: detect.detect_people(image, tiles=(1, 1.5, 2, 3), threads=1),
    "hog": lambda image: detect.detect_people(image, detector="hog"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsp", type=int, default=1000, help="how many LSP images (from im0001)")
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import cv2

    from dunet.data.images import load_image

    cv2.setNumThreads(1)
    lsp = people(DATA / "lsp", "lsp")[: args.lsp]
    lspet = [p for p in people(DATA / "lspet", "lspet") if len(p[1]) >= 10]
    rng = np.random.default_rng(args.seed)
    sets = {"LSP images": ([load_image(p) for p, _ in lsp], [[j] for _, j in lsp])}
    scenes = [scene(rng, lspet, load_image) for _ in range(args.scenes)]
    sets["scenes 1280x960, 1-3 people"] = ([s[0] for s in scenes], [s[1] for s in scenes])

    results = {"machine": machine(), "seed": args.seed, "opencv": cv2.__version__, "sets": {}}
    print(f"{'set':30s} {'detector':19s} {'people':>6s} {'recall':>7s} {'IoU.5':>6s} {'FP/img':>7s} {'ms/img':>7s}"
          f" {'box/j':>5s}  recall by height (<100 / 100-200 / 200-400 / >400 px)")
    for set_name, (images, truths) in sets.items():
        for detector in args.detectors:
            r = measure(CANDIDATES[detector], images, truths)
            results["sets"].setdefault(set_name, {})[detector] = r
            heights = " / ".join("-" if v["recall"] is None else f"{100 * v['recall']:.0f}% ({v['people']})"
                                 for v in r["recall_by_height"].values())
            print(f"{set_name:30s} {detector:19s} {r['people']:6d} {100 * r['recall']:6.1f}% "
                  f"{100 * r['recall_iou50']:5.1f}% {r['false_positives_per_image']:7.2f} {r['ms_per_image']:7.1f}"
                  f" {r['box_side_over_joints_side'] or 0:5.2f}  {heights}", flush=True)
    cpu = re.sub(r"[^a-z0-9]+", "_", results["machine"]["cpu"].lower()).strip("_")
    out = Path(args.out or REPO / "bench" / "results" / f"person_detect_{cpu}.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
