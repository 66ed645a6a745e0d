"""dunet's pose model against MediaPipe Pose, each finding the person itself, on the held-out LSP people.

    .venv/bin/python bench/pose_peers.py --mediapipe-python MP_VENV/bin/python [--rounds 5]

People: the 100 LSP people that the shipped pose models hold out (split_seed 0, 10 %), in their own images
(person-centred photos, as LSP cut them). Each method gets the whole image and finds the person with its own
detector: dunet `load("pose").predict(image)` (BlazePose's person detector, then the DU-Net), with and without
the flip test; MediaPipe `Pose(static_image_mode=True, model_complexity=1)` ("full"; its detector on every
image). A person a method does not find scores 0. Scored: PCK@0.2 of the torso (right shoulder to left hip) on
the 12 joints both predict (LSP's 14 but neck and head top).

Time per image, detection included, one core: this process is pinned to one core and runs dunet on one
thread; MediaPipe runs in a child process pinned the same way (bench/_mediapipe_pose.py). dunet's rounds come
before and after MediaPipe's, so a change of machine load shows as a gap between its two halves.

MediaPipe is not a dunet dependency, not even of the `peers` extra: its 0.10 wheels need numpy < 2 and bring
opencv-contrib-python, which would replace dunet's OpenCV. Give it a venv of its own:

    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14 "numpy<2"

Prints a table and writes bench/results/pose_peers_<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import results_file  # bench/ is on sys.path when run as a script
from pose_wild import correct, held_out

SHARED = 12  # LSP's first 12 joints are the ones MediaPipe also gives (bench/_mediapipe_pose.py)


def dunet_rounds(landmarker, images: list, rounds: int) -> list[float]:
    """ms per image of each round (every image once per round), after one warm-up pass."""
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        for image in images:
            landmarker.predict(image)
        times.append(1000 * (time.perf_counter() - start) / len(images))
    return times[1:]


def pck(flags: list[np.ndarray]) -> float:
    return round(100 * float(np.mean(np.concatenate(flags))), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mediapipe-python", default=sys.executable,
                        help="a Python with mediapipe installed (see the module docstring)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per method (each: every image once)")
    parser.add_argument("--model", default="pose", help="dunet's pose model: a name (`dunet models`) or a run")
    args = parser.parse_args()

    import dunet
    from dunet.data.images import load_image
    from dunet.runtime.cpu import cpu_name

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    persons = held_out()
    paths = [str(path) for path, _ in persons]
    truths = [joints for _, joints in persons]
    images = [load_image(path) for path in paths]

    rows = {}
    for name, flip in (("dunet", False), ("dunet, flip test", True)):
        landmarker = dunet.load(args.model, threads=1, flip=flip)
        found = [landmarker.predict(image) for image in images]
        rows[name] = {"backend": landmarker.runner.backend, "found": sum(r is not None for r in found),
                      "flags": [correct(None if r is None else r.points, t) for r, t in zip(found, truths)],
                      "landmarker": landmarker}

    dunet_before = {name: dunet_rounds(row["landmarker"], images, args.rounds) for name, row in rows.items()}
    job = json.dumps({"images": paths, "rounds": args.rounds})
    done = subprocess.run([args.mediapipe_python, str(Path(__file__).with_name("_mediapipe_pose.py")), job],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"MediaPipe failed ({args.mediapipe_python}): {done.stderr.strip().splitlines()[-1:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    dunet_after = {name: dunet_rounds(row["landmarker"], images, args.rounds) for name, row in rows.items()}

    mp_points = [None if p is None else np.asarray(p) for p in theirs["points"]]
    table = [{"method": f"MediaPipe Pose {theirs['mediapipe']} (full)", "backend": "tflite",
              "found": sum(p is not None for p in mp_points),
              "pck_12": pck([correct(p, t[:SHARED]) if p is not None else np.zeros(SHARED, bool)
                             for p, t in zip(mp_points, truths)]),
              "pck_14": None, "ms_per_image": round(float(np.median(theirs["ms_per_image"])), 1),
              "ms_rounds": theirs["ms_per_image"]}]
    for name, row in rows.items():
        times = dunet_before[name] + dunet_after[name]
        table.append({"method": f"{name} ({args.model})", "backend": row["backend"], "found": row["found"],
                      "pck_12": pck([f[:SHARED] for f in row["flags"]]), "pck_14": pck(row["flags"]),
                      "ms_per_image": round(float(np.median(times)), 1),
                      "ms_before_after": [round(float(np.median(dunet_before[name])), 1),
                                          round(float(np.median(dunet_after[name])), 1)], "ms_rounds": times})
    mediapipe_ms = table[0]["ms_per_image"]
    print(f"{len(persons)} held-out LSP people, each method with its own person detector, one core, {cpu_name()}")
    print(f"{'method':<40}{'backend':>10}{'found':>7}{'PCK 12 %':>10}{'PCK 14 %':>10}{'ms/image':>10}{'x MP':>6}")
    for r in table:
        r["x_mediapipe"] = round(r["ms_per_image"] / mediapipe_ms, 2)
        pck14 = "" if r["pck_14"] is None else f"{r['pck_14']:.2f}"
        print(f"{r['method']:<40}{r['backend']:>10}{r['found']:>7}{r['pck_12']:>10.2f}{pck14:>10}"
              f"{r['ms_per_image']:>10.1f}{r['x_mediapipe']:>6.2f}")
    out = results_file("pose_peers")
    out.write_text(json.dumps({"benchmark": "dunet pose vs MediaPipe Pose, 100 held-out LSP people", "cpu": cpu_name(),
                               "people": len(persons), "rounds": args.rounds, "rows": table,
                               "command": f"python bench/pose_peers.py --model {args.model} --rounds {args.rounds}"},
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
