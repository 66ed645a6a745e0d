"""`dunet demo`: train a slim DU-Net on the built-in generated faces, evaluate it on held-out
generated faces against the same network untrained, and write a report folder."""

from __future__ import annotations

import argparse
import json
import os
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


def _beside(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}"


def _start(out: Path) -> Path:
    """A fresh folder beside `out` to build the report in: an earlier report stays as it is until the new one is
    complete (a bad data source, an error or a SIGTERM mid-training leaves it whole)."""
    from dunet import DunetError

    old = _beside(out, "old")
    if not out.exists() and (old / MARKER).exists():  # a demo stopped between its two renames: put it back
        os.replace(old, out)
    if out.exists() and not (out / MARKER).exists():
        raise DunetError(f"{out} exists and is not an earlier demo report; choose another --out")
    staging = _beside(out, "partial")
    if staging.exists():
        if not (staging / MARKER).exists():
            raise DunetError(f"{staging} exists and is not a demo report in the making; move it away")
        shutil.rmtree(staging)  # left by a demo that was killed
    staging.mkdir(parents=True)
    (staging / MARKER).write_text("written by `dunet demo`; safe to delete\n")
    return staging


def _publish(staging: Path, out: Path) -> None:
    """Put the finished report in place of the earlier one, which is deleted only then."""
    old = _beside(out, "old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from dunet import DunetError
    from dunet.engine.config import load_config

    started = time.perf_counter()
    out = Path(args.out)
    cfg = load_config(DEMO_CONFIG, args.overrides)
    staging = _start(out)
    try:
        code = _report(cfg, staging, out, started)
        _publish(staging, out)
    except OSError as err:
        raise DunetError(f"{out}: cannot write the report ({err.strerror or err}); an earlier report is kept") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return code


def _report(cfg, folder: Path, out: Path, started: float) -> int:
    """Train and evaluate into `folder`, which becomes `out` once done (the paths printed are those in `out`)."""
    import torch
    from PIL import Image

    from dunet import DunetError
    from dunet.data.draw import draw_overlay
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import errors_per_sample, predict_source, score
    from dunet.engine.inference import load_torch_model, torch_model
    from dunet.engine.trainer import train
    from dunet.metrics import format_table, plot_ced
    from dunet.models import build_model

    held_out = open_source(cfg.data.val)
    if cfg.model.landmarks != held_out.spec.num_keypoints:  # as training would refuse it, but before any work
        raise DunetError(f"config key 'model.landmarks' is {cfg.model.landmarks} but {cfg.data.val} has "
                         f"{held_out.spec.num_keypoints} keypoints per sample; set "
                         f"model.landmarks={held_out.spec.num_keypoints}")
    print(f"dunet demo: {cfg.model.arch}({cfg.model.units}) at {cfg.model.input_size} px on {' + '.join(cfg.data.train)}, "
          f"held-out {cfg.data.val}; report -> {out}")

    torch.manual_seed(cfg.seed)  # the same initial weights training starts from
    untrained = torch_model(build_model(cfg.model), cfg, held_out.spec)
    pred0, idx = predict_source(untrained.predict_crops, held_out, cfg.model.input_size)
    before = score(held_out, pred0, idx)

    train(cfg, folder / "run")
    trained = load_torch_model(folder / "run" / "best")
    pred1, idx = predict_source(trained.predict_crops, held_out, cfg.model.input_size)
    after = score(held_out, pred1, idx)

    plot_ced({"untrained": errors_per_sample(held_out, pred0, idx),
              "trained": errors_per_sample(held_out, pred1, idx)}, folder / "ced.png")
    (folder / "overlays").mkdir()
    for n, i in enumerate(idx[:8]):
        image = held_out.load_image(int(i))
        sample = held_out.samples[int(i)]
        drawn = draw_overlay(image, pred1[n], sample.visible, held_out.spec, scale=2)
        Image.fromarray(drawn).save(folder / "overlays" / f"held_out_{int(i):04d}.png")
    minutes = (time.perf_counter() - started) / 60
    report = {"config": str(DEMO_CONFIG), "held_out": cfg.data.val, "untrained": before, "trained": after,
              "minutes": round(minutes, 2)}
    (folder / "metrics.json").write_text(json.dumps(report, indent=2))
    print(format_table(after))
    key = "nme_io"
    print(f"\nNME (inter-ocular) on {after['n']} held-out generated faces: untrained {before[key]:.2f}% -> "
          f"trained {after[key]:.2f}%  ({minutes:.1f} min). Report: {out}/metrics.json, {out}/ced.png, {out}/overlays/")
    return 0 if after[key] < before[key] else 1
