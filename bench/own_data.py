"""The own-data recipe end to end on a real DeepLabCut project, timed: `dunet train --data` (fine-tuned from the
closest shipped model, sized to --minutes on this machine), then the held-out frames scored with the crop
`dunet predict` really uses (the whole frame). Goal: PCK@0.2 of the animal's box >= 90 % and a mean error
under 5 % of the frame's diagonal, in <= 15 minutes on a 2-core CPU.

    .venv/bin/python bench/own_data.py [--data dlc:../shared/data/dlc_openfield/.../CollectedData_Pranav.csv]
                                       [--minutes 10] [--out runs/own_data] [--set init=]
    .venv/bin/python bench/own_data.py --analyse RUN [--backend auto]    # `dunet analyse` of the whole video
    .venv/bin/python bench/own_data.py --loop [--minutes 3]              # frames -> train -> outliers -> refine

`--set KEY=VALUE` goes to `dunet train`; `--set init=` trains from scratch instead of fine-tuning.

`--analyse RUN`: `dunet analyse RUN videos/m3v1mp4.mp4` over the openfield video's 2,330 frames (tables, labelled
video, plots), frames/s of the whole command. `--loop`: the label-free steps of the own-data loop, labels typed
in from the project's CSV: 20 frames spread over the labelled pool -> train -> `dunet outliers` on a video of the
rest of the pool -> those 20 frames "corrected" (their labels from the CSV) -> `dunet train --init` -> held-out
PCK@0.2 of both trains, on the 23 frames the plain recipe holds out (split_seed 0).

Prints a table and writes bench/results/own_data.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import machine  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = REPO.parent / "shared" / "data" / "dlc_openfield" / "labeled-data" / "m4s1" / "CollectedData_Pranav.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"dlc:{OPENFIELD}")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default=str(REPO / "runs" / "own_data"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to dunet train")
    parser.add_argument("--results", default=str(REPO / "bench" / "results" / "own_data.json"))
    parser.add_argument("--analyse", metavar="RUN", help="time `dunet analyse RUN` over the whole openfield video")
    parser.add_argument("--backend", default="auto", help="with --analyse: passed to dunet analyse")
    parser.add_argument("--loop", action="store_true", help="the loop: 20 frames, train, outliers, 20 more, retrain")
    args = parser.parse_args()
    if args.analyse:
        return record(args.results, f"analyse, {args.backend}", analyse(args.analyse, args.backend, args.out))
    if args.loop:
        return record(args.results, "loop", loop(args.minutes, Path(args.out)))

    from dunet.data.images import image_size
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import split_indices

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dunet", "train", "--data", args.data, "--out", args.out,
                    "--minutes", str(args.minutes)] + [f"--set={item}" for item in args.set], check=True)
    minutes = (time.perf_counter() - started) / 60
    model = load_torch_model(Path(args.out) / "last")
    cfg = model.config  # the training config: the held-out split, the epochs and the init it ran
    source = open_source(args.data)
    _, held_out = split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)
    pred, idx = predict_source(model.predict_crops, source, model.input_size, indices=held_out)
    metrics = score(source, pred, idx, model.spec)
    diagonals = []
    for i in idx:
        width, height = image_size(Path(source.samples[i].image_path))
        diagonals.append(np.hypot(width, height))
    errors = np.linalg.norm(pred - np.stack([source.samples[i].keypoints for i in idx]), axis=-1)
    visible = np.stack([source.samples[i].visible for i in idx]) > 0
    diagonal_share = float(np.mean((errors / np.array(diagonals)[:, None])[visible])) * 100
    row = {"data": args.data, "frames_held_out": len(idx), "minutes_total": round(minutes, 2),
           "input_size": model.input_size, "epochs": cfg.optim.epochs, "init": cfg.init,
           "pck_0.2_box": metrics["pck_0.2"], "mean_error_px": metrics["mean_error_px"],
           "mean_error_pct_diagonal": diagonal_share, "per_joint": metrics["per_joint"]}
    print(f"\n{machine()['cpu']}: own-data recipe on {len(source)} frames, {len(idx)} held out")
    print(f"{'init':>12}{'minutes':>8}{'input px':>9}{'epochs':>7}{'PCK@0.2 box':>13}{'mean err px':>12}"
          f"{'% diagonal':>11}")
    print(f"{cfg.init or 'scratch':>12}{minutes:>8.1f}{model.input_size:>9}{cfg.optim.epochs:>7}"
          f"{row['pck_0.2_box']:>12.1f}%{row['mean_error_px']:>12.1f}{diagonal_share:>10.2f}%")
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One result per starting point (fine-tuned, from scratch) and ISA limit (an AVX2-only CPU stood in for by
    # ONEDNN_MAX_CPU_ISA=AVX2), so the runs of the walk-through stay side by side.
    results = json.loads(out.read_text()).get("results", {}) if out.is_file() else {}
    host = machine()
    key = ", ".join([cfg.init or "scratch", *(f"{k}={v}" for k, v in host["isa_limits"].items())])
    results[key] = {"machine": host, **row}
    out.write_text(json.dumps({"benchmark": "own-data recipe on a DeepLabCut project",
                               "goal": {"minutes": 15, "pck_0.2_box": 90, "mean_error_pct_diagonal": 5},
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


VIDEO = REPO.parent / "shared" / "data" / "dlc_openfield" / "videos" / "m3v1mp4.mp4"


def record(path: str, key: str, row: dict) -> None:
    """Add one result to bench/results/own_data.json beside the others, with the machine it ran on."""
    out = Path(path)
    data = json.loads(out.read_text()) if out.is_file() else {"benchmark": "own-data recipe on a DeepLabCut project"}
    data.setdefault("results", {})[key] = {"machine": machine(), **row}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


def analyse(run: str, backend: str, out: str) -> dict:
    """`dunet analyse` over the whole video, as a user runs it: frames/s of the whole command (model load,
    decoding, tables, labelled video, plots) and of the analysis alone (its own report)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dunet", "analyse", run, str(VIDEO), "--out", f"{out}_analysed",
                           "--backend", backend], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    line = done.stdout.strip().splitlines()[-1]
    frames = int(line.split(": ", 1)[1].split(" frame")[0])
    row = {"video": str(VIDEO.name), "frames": frames, "seconds_total": round(seconds, 1),
           "frames_per_s_total": round(frames / seconds, 1), "report": line, "backend": backend}
    print(f"{machine()['cpu']}: dunet analyse {VIDEO.name}: {frames} frames in {seconds:.1f} s "
          f"({frames / seconds:.1f} frames/s including start-up)\n{line}")
    return row


def loop(minutes: float, out: Path) -> dict:
    import shutil

    import cv2
    import yaml

    from dunet.data.readers import DlcLabels, read_dlc_labels, write_dlc_labels
    from dunet.engine.trainer import split_indices

    project_source = OPENFIELD.parents[2]
    table = read_dlc_labels(OPENFIELD)
    scorer, names, rows = table.scorer, table.names, table.frames
    images = sorted(rows)
    pool_idx, held_idx = split_indices(len(images), 0.2, 0)
    pool = [images[i] for i in pool_idx]
    shutil.rmtree(out, ignore_errors=True)
    project = out / "project"
    (project / "labeled-data" / "first").mkdir(parents=True)
    (project / "config.yaml").write_text(yaml.safe_dump({"Task": "openfield", "scorer": scorer, "bodyparts": names,
                                                         "skeleton": []}))
    held_out = out / "held_out.csv"  # its images stay where they are: read with the project as IMAGE_DIR
    write_dlc_labels(held_out, DlcLabels(scorer, names, {images[i]: rows[images[i]] for i in held_idx}))
    val = f"dlc:{held_out}:{project_source}"
    first = [pool[i * len(pool) // 20] for i in range(20)]  # 20 frames spread over the pool, as `dunet frames` would
    for image in first:
        (project / "labeled-data" / "first" / Path(image).name).symlink_to(project_source / image)
    write_dlc_labels(project / "labeled-data" / "first" / f"CollectedData_{scorer}.csv",
                     DlcLabels(scorer, names, {f"labeled-data/first/{Path(i).name}": rows[i] for i in first}))
    rest = [i for i in pool if i not in first]
    video = out / "rest.mp4"  # the unlabelled part of the pool, as a video to look for mistakes in
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for image in rest:
        writer.write(cv2.imread(str(project_source / image)))
    writer.release()

    def train(name: str, *extra: str) -> tuple[float, dict]:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dunet", "train", "--data", str(project), "--val", val, "--minutes",
                        str(minutes), "--out", str(out / name), *extra], check=True)
        took = (time.perf_counter() - started) / 60
        scored = subprocess.run([sys.executable, "-m", "dunet", "eval", str(out / name), "--data", val, "--json"],
                                check=True, capture_output=True, text=True)
        return took, json.loads(scored.stdout.strip().splitlines()[-1])

    first_minutes, first_metrics = train("run1")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dunet", "outliers", str(out / "run1"), str(video), "--count", "20",
                    "--project", str(project)], check=True)
    outlier_seconds = time.perf_counter() - started
    machine_labels = read_dlc_labels(project / "labeled-data" / "rest" / "machinelabels.csv").frames
    corrected = {}
    for key in machine_labels:  # "corrected" in the labeller: the CSV's labels for the frame the video shows
        frame = int(Path(key).stem[3:])
        corrected[key] = rows[rest[frame]]
    write_dlc_labels(project / "labeled-data" / "rest" / f"CollectedData_{scorer}.csv",
                     DlcLabels(scorer, names, corrected))
    second_minutes, second_metrics = train("run2", "--init", str(out / "run1"))
    row = {"frames_first": 20, "frames_added": len(corrected), "held_out": len(held_idx), "minutes_per_train": minutes,
           "first": {"minutes": round(first_minutes, 2), "pck_0.2": first_metrics["pck_0.2"],
                     "mean_error_px": first_metrics["mean_error_px"]},
           "outliers_seconds": round(outlier_seconds, 1),
           "refined": {"minutes": round(second_minutes, 2), "pck_0.2": second_metrics["pck_0.2"],
                       "mean_error_px": second_metrics["mean_error_px"]}}
    print(f"\n{machine()['cpu']}: the loop on dlc_openfield, {len(held_idx)} held-out frames")
    print(f"{'step':>28}{'minutes':>9}{'PCK@0.2':>9}{'mean err px':>12}")
    for label, key, frames in (("train on 20 frames", "first", 20), ("refine with 20 outliers", "refined", 40)):
        r = row[key]
        print(f"{label + f' ({frames})':>28}{r['minutes']:>9.1f}{r['pck_0.2']:>8.1f}%{r['mean_error_px']:>12.1f}")
    print(f"dunet outliers over {len(rest)} frames: {outlier_seconds:.1f} s")
    return row


if __name__ == "__main__":
    main()
