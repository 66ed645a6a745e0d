"""dunet's face models against dlib's 68-point shape predictor, side by side in one run, on the 300-W faces
that dunet's models hold out (the 121 of `split_seed 0`).

    pip install 'dunet[peers]'          # dlib-bin + face_recognition_models (dlib's 68-point model file)
    .venv/bin/python bench/peers.py [--data 300w:../shared/data/300w] [--models 300w-dunet4 ...]

Each method finds the face itself: dlib with its own HOG detector, dunet with its shipped face detector
(BlazeFace). A face its detector misses is counted as a miss and still scored, with the whole image as its
box (these 300-W images are crops of about twice the face), so misses are never dropped from the average.
dunet is also scored with the landmark box (the box its models were trained on). Latency per face: the
landmark step alone (no detection), 1 thread, by each method's fastest backend, over the first --faces held-out
faces. The methods are timed in turns, --rounds times: on a shared machine the speed drifts between seconds
(dlib's predictor, bound by memory latency, ran 1.0-2.9 ms per face in four runs minutes apart on one AMD
EPYC), so each method's figure is its median over rounds, and "x dlib" is the median of the per-round ratios.
Prints a table and writes bench/results/peers.json. dlib's predictor was trained on the iBUG 300-W training
faces, which include these AFW and HELEN faces: its figures here are on its own training data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _timing import machine  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def load_dlib():
    import importlib.util

    # The model file is found without importing face_recognition_models, whose import needs pkg_resources.
    models = importlib.util.find_spec("face_recognition_models")
    model = models and Path(models.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    try:
        import dlib
    except ImportError:
        model = None
    if model is None or not model.is_file():
        sys.exit("bench/peers.py needs dlib and its 68-point model: pip install 'dunet[peers]' "
                 "(dlib-bin and face_recognition_models)")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


def dlib_points(predictor, image: np.ndarray, box) -> np.ndarray:
    import dlib

    x, y, w, h = box
    shape = predictor(image, dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def best_box(boxes: list, truth) -> tuple | None:
    """The detection that overlaps the labelled face most (IoU), or None for a miss (IoU < 0.3)."""
    def iou(a, b):
        ax, ay, aw, ah = a
        bx, by, bw, bh = b
        w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
        h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
        inter = w * h
        return inter / (aw * ah + bw * bh - inter)

    scored = [(iou(b, truth), b) for b in boxes]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= 0.3 else None


def pass_ms(landmarks, jobs: list) -> float:
    """ms per face of one call per (image, box) job, after one warm-up call."""
    landmarks(*jobs[0])
    start = time.perf_counter()
    for job in jobs:
        landmarks(*job)
    return 1000 * (time.perf_counter() - start) / len(jobs)


def time_in_rounds(methods: dict, jobs: list, rounds: int) -> tuple[dict, dict]:
    """Each method's ms per face (median over rounds) and its per-round ratio to the first method (median)."""
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, landmarks in methods.items():
            times[name].append(pass_ms(landmarks, jobs))
    first = next(iter(times.values()))
    ms = {name: float(np.median(t)) for name, t in times.items()}
    ratio = {name: float(np.median(np.array(t) / np.array(first))) for name, t in times.items()}
    return ms, ratio


def held_out_faces(data: str) -> tuple[list, list, np.ndarray, np.ndarray]:
    """The 121 faces every shipped face model holds out (10 %, `split_seed 0`): samples, images, true points
    (N, 68, 2) and inter-ocular normalisers."""
    from dunet.data.readers import open_source
    from dunet.data.sample import normalisers
    from dunet.engine.trainer import split_indices

    source = open_source(data)
    _, held_out = split_indices(len(source), 0.1, 0)
    samples = [source.samples[i] for i in held_out]
    gt = np.stack([s.keypoints for s in samples]).astype(np.float64)
    return samples, [source.load_image(i) for i in held_out], gt, np.asarray(normalisers(source.spec, samples))


def points_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The landmark box: its edges run through the outermost points. Points are pixel centres and a box is in
    pixel edges (dunet.api), hence + 0.5: the same crop as `dunet eval` cuts for the model card's figures."""
    return (float(points[:, 0].min()) + 0.5, float(points[:, 1].min()) + 0.5, float(np.ptp(points[:, 0])),
            float(np.ptp(points[:, 1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"300w:{REPO.parent / 'shared' / 'data' / '300w'}")
    parser.add_argument("--models", nargs="+",
                        default=["300w-dunet2-w64", "300w-dunet1-w64", "300w-dunet2-w80", "300w-dunet2-192"])
    parser.add_argument("--backend", default="auto", help="dunet's backend (auto: the fastest installed)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds; every method is timed once per round")
    parser.add_argument("--faces", type=int, default=10, help="faces per method per round (each timed once)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "peers.json"))
    args = parser.parse_args()

    detector, predictor = load_dlib()
    import dlib
    import torch

    import dunet
    from dunet.api import landmark_box
    from dunet.metrics import failure_rate, nme

    torch.set_num_threads(1)
    dlib.DLIB_USE_BLAS = False  # dlib's predictor is single-threaded anyway
    samples, images, gt, norm = held_out_faces(args.data)
    visible = np.ones(gt.shape[:2], dtype=bool)
    truth_boxes = [points_box(p) for p in gt]
    whole = [(0.0, 0.0, float(im.shape[1]), float(im.shape[0])) for im in images]

    rows = []
    timed = {}  # method -> landmarks(image, box): what is timed

    def add(name: str, pred: np.ndarray, misses: int, timing: str, backend: str) -> None:
        errors = nme(pred, gt, visible, norm)
        rows.append({"method": name, "backend": backend, "faces": len(samples), "missed": misses,
                     "nme_io": 100 * float(np.mean(errors)), "fr_0.08": failure_rate(errors, 0.08), "timing": timing})
        print(f"{name:<40} NME-io {rows[-1]['nme_io']:5.2f} %  missed {misses:3d}", flush=True)

    # dlib: its own HOG detector (one upsampling, as dlib's examples use), then the 68-point predictor.
    boxes, misses = [], 0
    for image, truth, fallback in zip(images, truth_boxes, whole):
        found = [(r.left(), r.top(), r.width(), r.height()) for r in detector(image, 1)]
        box = best_box(found, truth)
        misses += box is None
        boxes.append(box or fallback)
    pred = np.stack([dlib_points(predictor, im, b) for im, b in zip(images, boxes)])
    timed["dlib"] = lambda image, box: dlib_points(predictor, image, box)
    add("dlib ERT, its own detector", pred, misses, "dlib", "dlib")

    for model in args.models:
        landmarker = dunet.load(model, backend=args.backend, threads=1, detect_faces=False)  # boxes: given here
        backend = landmarker.runner.backend
        found_boxes, misses = [], 0
        for image, truth in zip(images, truth_boxes):
            box = best_box([landmark_box(b) for b in landmarker.detect(image)], truth)
            misses += box is None
            found_boxes.append(box)
        pred = np.stack([
            (landmarker.predict(im, box=b).points if b is not None else
             landmarker.predict_batch([im], [None])[0][0].points) for im, b in zip(images, found_boxes)])
        timed[model] = lambda image, box, landmarker=landmarker: landmarker.predict(image, box=box)
        add(f"{model}, BlazeFace box", pred, misses, model, backend)
        pred = np.stack([landmarker.predict(im, box=b).points for im, b in zip(images, truth_boxes)])
        add(f"{model}, landmark box", pred, 0, model, backend)

    jobs = list(zip(images, truth_boxes))[:args.faces]
    ms, ratio = time_in_rounds(timed, jobs, args.rounds)
    for r in rows:
        r["ms_per_face"], r["x_dlib"] = ms[r["timing"]], ratio[r["timing"]]
    print(f"\n{'method':<40}{'backend':>10}{'NME-io %':>10}{'FR@0.08':>9}{'missed':>8}{'ms/face':>9}{'x dlib':>8}")
    for r in rows:
        print(f"{r['method']:<40}{r['backend']:>10}{r['nme_io']:>10.2f}{r['fr_0.08']:>9.3f}{r['missed']:>8d}"
              f"{r['ms_per_face']:>9.2f}{r['x_dlib']:>8.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "dunet vs dlib 68-point predictor, 300-W held-out faces",
                               "data": args.data, "machine": machine(), "threads": 1, "rounds": args.rounds,
                               "faces_timed": len(jobs), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
