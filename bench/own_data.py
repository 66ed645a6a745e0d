"""The own-data recipe end to end on a real DeepLabCut project, timed: `dunet train --data` (fine-tuned from the
closest shipped model, sized to --minutes on this machine), then the held-out frames scored with the crop
`dunet predict` really uses (the whole frame). Goal: PCK@0.2 of the animal's box >= 90 % and a mean error
under 5 % of the frame's diagonal, in <= 15 minutes on a 2-core CPU.

    .venv/bin/python bench/own_data.py [--data dlc:../shared/data/dlc_openfield/.../CollectedData_Pranav.csv]
                                       [--minutes 10] [--out runs/own_data] [--set init=]

`--set KEY=VALUE` goes to `dunet train`; `--set init=` trains from scratch instead of fine-tuning.

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
    args = parser.parse_args()

    from dunet.data.images import image_size
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import LandmarkModel
    from dunet.engine.trainer import split_indices

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dunet", "train", "--data", args.data, "--out", args.out,
                    "--minutes", str(args.minutes)] + [f"--set={item}" for item in args.set], check=True)
    minutes = (time.perf_counter() - started) / 60
    model = LandmarkModel.load(Path(args.out) / "last")
    cfg = model.config
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
           "input_size": cfg.model.input_size, "epochs": cfg.optim.epochs, "init": cfg.init,
           "pck_0.2_box": metrics["pck_0.2"], "mean_error_px": metrics["mean_error_px"],
           "mean_error_pct_diagonal": diagonal_share, "per_joint": metrics["per_joint"]}
    print(f"\n{machine()['cpu']}: own-data recipe on {len(source)} frames, {len(idx)} held out")
    print(f"{'init':>12}{'minutes':>8}{'input px':>9}{'epochs':>7}{'PCK@0.2 box':>13}{'mean err px':>12}"
          f"{'% diagonal':>11}")
    print(f"{cfg.init or 'scratch':>12}{minutes:>8.1f}{cfg.model.input_size:>9}{cfg.optim.epochs:>7}"
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


if __name__ == "__main__":
    main()
