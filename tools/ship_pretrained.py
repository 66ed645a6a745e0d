"""Ship a trained run as a pretrained model inside the package: a one-file safetensors (int8 conv weights by
default) with its config and model card, plus an entry in dunet/pretrained/models.json. Run by hand after
training:

    .venv/bin/python tools/ship_pretrained.py runs/300w --name 300w-dunet4 --task face \
        --data "300-W (AFW + HELEN train subset), ../shared/data/300w" --recipe configs/300w_dunet4.yaml

A binary or ternary run can ship as a packed file instead (`--format packed`: 1-2 bits per quantized weight,
dunet.quant.packing); its metrics are then measured on the packed file itself. `--openvino-int8` also ships an
OpenVINO int8 IR of the weights (NAME-int8.xml/.bin), which OpenVINO runs for that model by default; a user's
machine has no calibration images, so the fast face model ships its int8 file ready. A model already shipped
gets one with `--add-openvino-int8 NAME` (its weights file and card stay as they are):

    .venv/bin/python tools/ship_pretrained.py --add-openvino-int8 lsp-lspet-dunet4

The validation metrics are measured here, on the run's held-out split, not copied from the log.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dunet.cli import main as dunet

PRETRAINED = Path(__file__).resolve().parents[1] / "dunet" / "pretrained"
CALIBRATION_CROPS = 300


def tune_decode_blur(model, source, indices, choices=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)) -> float:
    """The heatmap blur before sub-pixel decoding that scores best on `indices` (training samples, centre
    crops, no augmentation), each blur through the same pipeline as `dunet eval`."""
    from dunet.engine.evaluate import main_metric, predict_source, score

    results = {}
    for sigma in choices:
        model.set_decode_blur(sigma)
        coords, idx = predict_source(model.predict_crops, source, model.input_size, indices=indices)
        metrics = score(source, coords, idx)
        key, higher = main_metric(metrics)
        results[sigma] = metrics[key] if higher else -metrics[key]
    best = max(results, key=results.get)
    print(f"decode_blur on {len(indices)} training samples: " + ", ".join(f"{s}: {abs(v):.3f}" for s, v in results.items())
          + f" -> {best}")
    return best


def ship_openvino_int8(shipped: Path, name: str, source, train_idx: list[int], val_idx: list[int]) -> dict:
    """NAME-int8.xml/.bin beside the shipped file: its weights quantized by NNCF on 300 training-split crops (never
    the held-out ones), and the IR's own held-out figures."""
    import tempfile

    from dunet.commands.export import calibration_batches, check_int8
    from dunet.deploy.openvino import quantize_openvino_int8
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model
    from dunet.runtime.model import load_model

    runner = load_torch_model(shipped, precision="fp32")
    # 300 crops, NNCF's own default subset size: a shipped file is calibrated once, so it can afford more than
    # `dunet export --int8` takes by default.
    calibration = calibration_batches(source, runner.input_size, CALIBRATION_CROPS, indices=train_idx)
    int8 = PRETRAINED / f"{name}-int8.xml"
    with tempfile.TemporaryDirectory() as tmp:
        float_ir = Path(tmp) / f"{name}.xml"
        assert dunet(["export", str(shipped), "--format", "openvino", "--exporter", "torchscript",
                      "--out", str(float_ir)]) == 0
        quantize_openvino_int8(float_ir, int8, calibration)
    check_int8(runner, runner.model, int8, calibration, "openvino")
    model = load_model(int8, backend="openvino", precision="fp32", threads=1)
    pred, idx = predict_source(model.predict_crops, source, runner.input_size, indices=val_idx)
    metrics = score(source, pred, idx)
    headline = headline_figures(metrics)
    return {"file": int8.name, "bytes": int8.stat().st_size + int8.with_suffix(".bin").stat().st_size,
            "validation": describe(headline, len(idx), runner.config), "measured_on": measured_on()}


def add_openvino_int8(name: str) -> dict:
    """`ship_openvino_int8` for the shipped model `name`, on the held-out split its config names; its
    models.json entry gains the file."""
    from dunet.engine.inference import load_torch_model
    from dunet.runtime.pretrained import resolve_pretrained

    shipped = resolve_pretrained(name)
    cfg = load_torch_model(shipped, precision="fp32").config  # a shipped file keeps its training config
    int8 = ship_openvino_int8(shipped, name, *held_out_split(cfg))
    index = read_index()
    next(entry for entry in index["models"] if entry["name"] == name)["openvino_int8"] = int8
    write_index(index)
    return int8


def held_out_split(cfg) -> tuple:
    """The training config's first source (the held-out split comes off it), its training and held-out indices."""
    from dunet.data.readers import open_source
    from dunet.engine.trainer import split_indices

    source = open_source(cfg.data.train[0])
    return source, *split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)


def read_index() -> dict:
    path = PRETRAINED / "models.json"
    return json.loads(path.read_text()) if path.exists() else {"models": []}


def write_index(index: dict) -> None:
    (PRETRAINED / "models.json").write_text(json.dumps(index, indent=1) + "\n")


def measured_on() -> str:
    """The CPU whose kernels computed a figure, and the oneDNN ISA cap if one was set: int8 figures differ between
    CPU families (bench/isa_spread.py)."""
    import os

    from dunet.runtime.cpu import cpu_name

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return cpu_name() + (f", oneDNN capped at {cap}" if cap else "")


def headline_figures(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("nme_io", "nme_ip", "fr_0.08", "auc_0.08", "pck_0.2") if metrics.get(k) is not None}


def describe(headline: dict, count: int, cfg) -> str:
    """"nme_io 3.57, fr_0.08 0.008 on 121 held-out samples (split_seed 0, 10% of the data)"."""
    return (", ".join(f"{k} {v:.2f}" if "nme" in k or "pck" in k else f"{k} {v:.3f}" for k, v in headline.items())
            + f" on {count} held-out samples (split_seed {cfg.data.split_seed}, {cfg.data.val_fraction:.0%} of the data)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", nargs="?")
    parser.add_argument("--name")
    parser.add_argument("--task", choices=["face", "pose"])
    parser.add_argument("--data", help="what the weights were learned from, in words (the card's data line)")
    parser.add_argument("--recipe")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="best: the epoch with the best held-out metric (chosen on the samples it is then scored "
                             "on, so slightly optimistic); last: the end of the schedule, with no such choice")
    parser.add_argument("--tune-decode", action="store_true",
                        help="pick decode_blur on up to 300 training-split samples, spread over the split (never "
                             "held-out ones)")
    parser.add_argument("--format", choices=["half", "int8", "packed"], default="int8",
                        help="half: float16 safetensors with the card in its metadata; int8: the same with int8 conv "
                             "weights (scale per output channel); packed: 1-2 bit packed file of a BW/TW model")
    parser.add_argument("--openvino-int8", action="store_true",
                        help="also ship an OpenVINO int8 IR of the shipped weights (calibrated on 300 training-split "
                             "crops), scored on the held-out split; OpenVINO then runs it for this model by default")
    parser.add_argument("--add-openvino-int8", metavar="NAME",
                        help="only make the OpenVINO int8 file of the shipped model NAME (no run needed)")
    args = parser.parse_args()
    if args.add_openvino_int8:
        print(json.dumps(add_openvino_int8(args.add_openvino_int8)["validation"]))
        return
    missing = [flag for flag in ("run", "name", "task", "data", "recipe") if getattr(args, flag) is None]
    if missing:
        parser.error("needed to ship a run: " + ", ".join(missing))

    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import evenly_spaced
    from dunet.models.config import ModelConfig

    run = Path(args.run)
    PRETRAINED.mkdir(exist_ok=True)
    shipped = PRETRAINED / (f"{args.name}.packed.safetensors" if args.format == "packed" else f"{args.name}.safetensors")
    checkpoint = run / args.checkpoint
    model = load_torch_model(checkpoint, precision="fp32")  # to tune the decoding on training samples
    cfg = model.config  # the training config: where the held-out split comes from
    source, train_idx, val_idx = held_out_split(cfg)
    blur = []
    if args.tune_decode:
        blur = ["--decode-blur", str(tune_decode_blur(model, source, evenly_spaced(train_idx, 300)))]
    weights = {"half": ["--half"], "int8": ["--half", "--int8-weights"]}.get(args.format, [])

    def export(card_path=None):
        command = ["--format", "packed"] if args.format == "packed" else ["--format", "safetensors", *weights]
        command += ["--card", str(card_path)] if card_path else []  # the task in it names the crop detector
        assert dunet(["export", str(checkpoint), *command, "--out", str(shipped), *blur]) == 0

    export()  # measured as shipped: the metrics below come from this very file
    model = load_torch_model(shipped, precision="fp32")  # model cards are fp32 figures
    pred, idx = predict_source(model.predict_crops, source, model.input_size, indices=val_idx)
    metrics = score(source, pred, idx)
    headline = headline_figures(metrics)
    if model.spec.can_flip and "pck_0.2" in metrics:  # pose is scored with the flip test too (the paper's protocol)
        pred, idx = predict_source(model.predict_crops, source, model.input_size, indices=val_idx, flip=True)
        flipped = score(source, pred, idx)
        metrics["flip_test"] = flipped
        headline["pck_0.2 with flip"] = flipped["pck_0.2"]
    m = model.card.network
    card = {
        "name": args.name,
        "task": args.task,
        "summary": f"order-{m.order} DU-Net({m.units}), {m.input_size} px, {m.landmarks} landmarks ({model.spec.name})"
                   + (f", {m.channels} channels between blocks" if m.channels != ModelConfig.channels else "")
                   + (f", {m.bottleneck}-channel bottlenecks" if m.bottleneck != ModelConfig.bottleneck else "")
                   + {"packed": f", quantized {m.quant}, packed", "int8": ", int8 weights",
                      "half": ", float16 weights"}[args.format],
        "bytes": shipped.stat().st_size,
        "data": args.data,
        "license_note": "weights learned from research-only data: for research use only",
        "recipe": args.recipe,
        "decode": f"Taylor sub-pixel step after a Gaussian blur of sigma {model.card.codec.blur} heatmap px",
        "validation": describe(headline, len(idx), cfg),
        "measured_on": measured_on(),
        "metrics": metrics,
        "file": shipped.name,
    }
    if args.openvino_int8:
        card["openvino_int8"] = ship_openvino_int8(shipped, args.name, source, train_idx, val_idx)
    card_path = run / "release_card.json"  # not RUN/last/card.json, the checkpoint's own card
    card_path.write_text(json.dumps(card))
    export(card_path)  # the same weights again, now with the card in the file's metadata
    card["bytes"] = shipped.stat().st_size
    index = read_index()
    entry = {k: v for k, v in card.items() if k != "metrics"}
    names = [e["name"] for e in index["models"]]
    if args.name in names:  # a model shipped again keeps its place in the list
        index["models"][names.index(args.name)] = entry
    else:
        index["models"].append(entry)
    write_index(index)
    print(json.dumps(card["validation"]))


if __name__ == "__main__":
    main()
