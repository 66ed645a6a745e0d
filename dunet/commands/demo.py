"""`dunet demo`: train a slim DU-Net on the built-in generated faces, evaluate it on held-out
generated faces against the same network untrained, and write a report folder."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
MARKER = ".dunet-demo"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate a small DU-Net on built-in generated faces (minutes, CPU)")
    p.add_argument("--out", default="demo", help="report folder (replaced if it holds an earlier demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo recipe (dunet/configs/demo.yaml)")
    p.set_defaults(func=run)


def _prepare(out: Path) -> None:
    from dunet import DunetError

    if out.exists():
        if not (out / MARKER).exists():
            raise DunetError(f"{out} exists and is not an earlier demo report; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `dunet demo`; safe to delete\n")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from dunet.data.draw import draw_overlay
    from dunet.data.readers import open_source
    from dunet.engine.config import load_config
    from dunet.engine.evaluate import errors_per_sample, predict_source, score
    from dunet.engine.inference import LandmarkModel
    from dunet.engine.trainer import train
    from dunet.metrics import format_table, plot_ced
    from dunet.models import build_model

    started = time.perf_counter()
    out = Path(args.out)
    cfg = load_config(DEMO_CONFIG, args.overrides)  # before _prepare: a bad --set must not cost the last report
    _prepare(out)
    held_out = open_source(cfg.data.val)
    print(f"dunet demo: {cfg.model.arch}({cfg.model.units}) at {cfg.model.input_size} px on {' + '.join(cfg.data.train)}, "
          f"held-out {cfg.data.val}; report -> {out}")

    torch.manual_seed(cfg.seed)  # the same initial weights training starts from
    untrained = LandmarkModel(build_model(cfg.model), cfg, held_out.spec)
    pred0, idx = predict_source(untrained.predict_crops, held_out, cfg.model.input_size)
    before = score(held_out, pred0, idx)

    train(cfg, out / "run")
    trained = LandmarkModel.load(out / "run" / "best")
    pred1, idx = predict_source(trained.predict_crops, held_out, cfg.model.input_size)
    after = score(held_out, pred1, idx)

    plot_ced({"untrained": errors_per_sample(held_out, pred0, idx),
              "trained": errors_per_sample(held_out, pred1, idx)}, out / "ced.png")
    overlays = out / "overlays"
    overlays.mkdir()
    for n, i in enumerate(idx[:8]):
        image = held_out.load_image(int(i))
        sample = held_out.samples[int(i)]
        drawn = draw_overlay(image, pred1[n], sample.visible, held_out.spec, scale=2)
        Image.fromarray(drawn).save(overlays / f"held_out_{int(i):04d}.png")
    minutes = (time.perf_counter() - started) / 60
    report = {"config": str(DEMO_CONFIG), "held_out": cfg.data.val, "untrained": before, "trained": after,
              "minutes": round(minutes, 2)}
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(format_table(after))
    key = "nme_io"
    print(f"\nNME (inter-ocular) on {after['n']} held-out generated faces: untrained {before[key]:.2f}% -> "
          f"trained {after[key]:.2f}%  ({minutes:.1f} min). Report: {out}/metrics.json, {out}/ced.png, {overlays}/")
    return 0 if after[key] < before[key] else 1
