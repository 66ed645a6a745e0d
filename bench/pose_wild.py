"""Pose in the wild: a pose model on the boxes BlazePose's person detector finds, against the boxes of the true
joints, on held-out LSP people pasted into larger scenes.

    .venv/bin/python bench/pose_wild.py [--model pose] [--single 100] [--multi 50] [--seed 0]

People: the 100 LSP people that the shipped pose models hold out (split_seed 0, 10 %), never seen in training.
Scenes: 1280x960 pictures (backgrounds as bench/person_detect.py: a blurred, tiled LSPET photo or a plain
texture) with people pasted in, each with its whole LSP image (so with its own background):
- single: one person per scene, scaled so that the scene is 1.5-2.5x taller than the person's image; each
  held-out person once.
- multi: 2-3 people per scene, not overlapping, half scaled as above, half 100-400 px tall (joints' box).
Scored: PCK@0.2 of the torso (right shoulder to left hip) over all 14 joints, for
- "LSP image, true box": the person in its own LSP image, cropped around its joints' box (as `dunet eval`);
- "scene, true box": `predict(scene, box=joints' box)`;
- "scene, detector": `predict(scene)` (single: the largest person found; a person not found scores 0, and
  both figures are also given over the people found only) and
  `predict_all(scene)` (multi: each person is matched to the found person whose joints are nearest, median
  error under one torso, one to one; recall counts people at least 100 px tall, and their PCK is given both
  over the people found and with the missed ones scoring 0).
The model runs on the default backend without the flip test. Prints a table and writes
bench/results/pose_wild_<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _timing import results_file  # bench/ is on sys.path when run as a script
from person_detect import (  # bench/ is on sys.path
    DATA,
    SCENE_H,
    SCENE_W,
    background,
    people,
)

ALPHA = 0.2
TORSO = (8, 3)  # right shoulder, left hip: LSP's torso size
MIN_HEIGHT = 100  # px: the people the recall is counted on


def held_out() -> list[tuple[Path, np.ndarray]]:
    from dunet.engine.trainer import split_indices

    everyone = people(DATA / "lsp", "lsp")
    _, val = split_indices(len(everyone), 0.1, 0)
    return [everyone[i] for i in val]


def paste(rng, canvas: np.ndarray, taken: list, image: np.ndarray, joints: np.ndarray, small: bool):
    """Paste `image` into `canvas` where it overlaps nothing in `taken`: scaled so the scene is 1.5-2.5x taller
    than it, or (small) so the person is 100-400 px tall. The joints in scene pixels, or None if no room."""
    import cv2

    height = np.ptp(joints[:, 1])
    factor = rng.uniform(100, 400) / max(height, 1.0) if small else SCENE_H / rng.uniform(1.5, 2.5) / image.shape[0]
    w, h = int(image.shape[1] * factor), int(image.shape[0] * factor)
    if not (8 < w < SCENE_W and 8 < h < SCENE_H):
        return None
    for _ in range(50):
        x, y = int(rng.integers(0, SCENE_W - w)), int(rng.integers(0, SCENE_H - h))
        if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for a, b, c, d in taken):
            break
    else:
        return None
    canvas[y: y + h, x: x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    taken.append((x, y, w, h))
    # A pixel centre u of the image lands at (u + 0.5) * factor - 0.5 in the scene.
    return (joints + 0.5) * factor - 0.5 + [x, y]


def joints_box(joints: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = joints.min(0), joints.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def correct(points: np.ndarray | None, joints: np.ndarray) -> np.ndarray:
    """(14,) bool: each joint within ALPHA torso sizes of the truth (all False for a person not found)."""
    if points is None:
        return np.zeros(len(joints), bool)
    torso = np.linalg.norm(joints[TORSO[0]] - joints[TORSO[1]])
    return np.linalg.norm(points - joints, axis=1) <= ALPHA * torso


def match(results, truths) -> list:
    """For each true person, the points of the found person nearest to it (median error under one torso, one
    to one, nearest pairs first), or None."""
    pairs = []
    for t, joints in enumerate(truths):
        torso = np.linalg.norm(joints[TORSO[0]] - joints[TORSO[1]])
        for r, result in enumerate(results):
            error = float(np.median(np.linalg.norm(result.points - joints, axis=1))) / max(torso, 1.0)
            if error < 1.0:
                pairs.append((error, t, r))
    matched, used = [None] * len(truths), set()
    for _, t, r in sorted(pairs):
        if matched[t] is None and r not in used:
            matched[t] = results[r].points
            used.add(r)
    return matched


def pck(flags: list[np.ndarray]) -> float | None:
    return round(100 * float(np.mean(np.concatenate(flags))), 2) if flags else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pose")
    parser.add_argument("--single", type=int, default=100, help="single-person scenes (at most 100)")
    parser.add_argument("--multi", type=int, default=50, help="scenes of 2-3 people")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import cv2

    import dunet
    from dunet.data.images import load_image
    from dunet.runtime.cpu import cpu_name

    pose = dunet.load(args.model)
    rng = np.random.default_rng(args.seed)
    lspet = [p for p in people(DATA / "lspet", "lspet") if len(p[1]) >= 10]
    persons = held_out()
    started = time.perf_counter()

    own, true_box, found_single, seconds, found = [], [], [], [], []
    for path, joints in persons[: args.single]:
        image = load_image(path)
        own.append(correct(pose.predict(image, box=joints_box(joints)).points, joints))
        canvas, taken = background(rng, lspet, load_image), []
        truth = None
        while truth is None:
            truth = paste(rng, canvas, taken, image, joints, small=False)
        true_box.append(correct(pose.predict(canvas, box=joints_box(truth)).points, truth))
        start = time.perf_counter()
        result = pose.predict(canvas)
        seconds.append(time.perf_counter() - start)
        found_single.append(correct(None if result is None else result.points, truth))
        found.append(result is not None)
    single = {"people": len(own), "pck_lsp_image_true_box": pck(own), "pck_scene_true_box": pck(true_box),
              "pck_scene_detector": pck(found_single), "found": int(sum(found)),
              "pck_found_true_box": pck([f for f, hit in zip(true_box, found) if hit]),
              "pck_found_detector": pck([f for f, hit in zip(found_single, found) if hit]),
              "median_seconds_per_scene": round(float(np.median(seconds)), 3) if seconds else None}

    recall, found_multi, missed_zero, true_multi, people_multi, seconds_multi = [], [], [], [], 0, []
    for _ in range(args.multi):
        canvas, taken, truths = background(rng, lspet, load_image), [], []
        for _ in range(rng.integers(2, 4)):
            path, joints = persons[rng.integers(len(persons))]
            truth = paste(rng, canvas, taken, load_image(path), joints, small=rng.random() < 0.5)
            if truth is not None:
                truths.append(truth)
        start = time.perf_counter()
        everyone = pose.predict_all(canvas)
        seconds_multi.append(time.perf_counter() - start)
        matched = match(everyone, truths)
        for truth, points in zip(truths, matched):
            people_multi += 1
            if np.ptp(truth[:, 1]) < MIN_HEIGHT:
                continue
            recall.append(points is not None)
            true_multi.append(correct(pose.predict(canvas, box=joints_box(truth)).points, truth))
            missed_zero.append(correct(points, truth))
            if points is not None:
                found_multi.append(correct(points, truth))
    multi = {"scenes": args.multi, "people": people_multi, "people_100px": len(recall),
             "recall_100px": round(100 * float(np.mean(recall)), 2) if recall else None,
             "pck_found_detector": pck(found_multi), "pck_detector_missed_as_0": pck(missed_zero),
             "pck_true_box": pck(true_multi),
             "median_seconds_per_scene": round(float(np.median(seconds_multi)), 3) if seconds_multi else None}

    results = {"cpu": cpu_name(), "model": pose.name, "backend": pose.runner.backend, "flip": False,
               "seed": args.seed, "single": single, "multi": multi,
               "seconds": round(time.perf_counter() - started, 1), "opencv": cv2.__version__,
               "command": f"python bench/pose_wild.py --model {args.model} --single {args.single} "
                          f"--multi {args.multi} --seed {args.seed}"}
    print(f"{pose.name} ({pose.runner.backend}), PCK@0.2, {cpu_name()}")
    if single["people"]:
        print(f"single: {single['people']} held-out LSP people, 1 per 1280x960 scene, scaled 1.5-2.5x")
        print(f"  LSP image, true box   {single['pck_lsp_image_true_box']:6.2f}")
        print(f"  scene, true box       {single['pck_scene_true_box']:6.2f}")
        print(f"  scene, detector       {single['pck_scene_detector']:6.2f}   (found {single['found']} of "
              f"{single['people']}, the missed ones scoring 0; {single['median_seconds_per_scene']} s per scene)")
        print(f"  people found: true box {single['pck_found_true_box']:6.2f}, "
              f"detector {single['pck_found_detector']:6.2f}")
    print(f"multi: {args.multi} scenes, {people_multi} people, {len(recall)} at least {MIN_HEIGHT} px tall "
          f"({multi['median_seconds_per_scene']} s per scene for predict_all)")
    print(f"  recall                {multi['recall_100px']}")
    print(f"  PCK, true box         {multi['pck_true_box']}")
    print(f"  PCK, found people     {multi['pck_found_detector']}")
    print(f"  PCK, missed count 0   {multi['pck_detector_missed_as_0']}")
    out = results_file("pose_wild")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
