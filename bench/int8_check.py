"""Landmarks of the deployed int8 model against the training-time model, on held-out samples.

A BW/TW model's weights are exact in int8 (dunet/deploy/int8.py), so what int8 deployment changes is
the activation grid. Static int8 uses one calibrated uint8 scale per tensor; dynamic int8 computes
the scale of each conv input at run time (run here at batch 1, so per sample, like the training-time
k-bit input quantizer, on a finer 255-step grid); "openvino" is OpenVINO's static int8 (NNCF
calibration, the fast path). This script exports a trained checkpoint as `dunet export --format
onnx|openvino --int8` does, runs the training-time model and the int8 files on the
run's held-out split (same split_seed / val_fraction as training) and reports how far the int8
landmarks are from the training-time ones, in model-input pixels (goal: within 0.5 px), plus the
data set's metric for each. Run by hand:

    .venv/bin/python bench/int8_check.py runs/t5/qig818/best [--calibration 32] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dunet import DunetError  # noqa: E402


def run(args: argparse.Namespace) -> dict:
    from dunet.data.dataset import LandmarkDataset
    from dunet.data.heatmaps import HeatmapCodec
    from dunet.data.readers import open_source
    from dunet.deploy.int8 import quantize_onnx_int8
    from dunet.deploy.onnx_export import export_onnx
    from dunet.runtime.onnxruntime import OnnxPredictor
    from dunet.engine.evaluate import main_metric, score
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import split_indices
    from dunet.runtime.model import LandmarkModel

    torch.set_num_threads(args.threads)
    runner = load_torch_model(args.checkpoint)  # the training-time model, fp32 eval
    cfg = runner.config  # the training config: where the held-out split comes from
    source = open_source(args.data or cfg.data.train[0])
    if args.data or cfg.data.val:
        train_idx, val_idx = list(range(len(source))), list(range(len(source)))
    else:
        train_idx, val_idx = split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)
    if args.max_samples:
        val_idx = val_idx[: args.max_samples]
    dataset = LandmarkDataset(source, input_size=runner.input_size, augment=False)
    codec = HeatmapCodec(runner.input_size)  # no blur: the int8 error itself, not the decoding's
    calibration = [dataset[i]["image"][None].numpy() for i in train_idx[: args.calibration]]

    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        export_onnx(runner.model, float_path, runner.input_size, keep_input_quantizers=args.keep_input_quantizers)
        predictors = {}
        for mode in ("static", "dynamic"):
            path = Path(tmp) / f"{mode}.onnx"
            quantize_onnx_int8(float_path, path, calibration if mode == "static" else None, mode=mode)
            predictors[mode] = OnnxPredictor(path, threads=args.threads)
        if args.openvino:
            from dunet.deploy.openvino import quantize_openvino_int8
            from dunet.runtime.openvino import OpenVinoPredictor

            path = quantize_openvino_int8(float_path, Path(tmp) / "openvino.xml", calibration)
            predictors["openvino"] = OpenVinoPredictor(path, "fp32", threads=args.threads)
        # The int8 files run through the same pipeline as the training-time model (detection sigmoid included).
        models = {"training": runner, **{mode: LandmarkModel(p, runner.card) for mode, p in predictors.items()}}
        modes = list(predictors)
        xy: dict[str, list] = {name: [] for name in models}
        in_image: dict[str, list] = {name: [] for name in models}
        for first in range(0, len(val_idx), args.batch):
            items = [dataset[i] for i in val_idx[first: first + args.batch]]
            images = torch.stack([item["image"] for item in items])
            crop_to_image = np.stack([np.asarray(item["crop_to_image"]) for item in items])
            for name, model in models.items():
                if name == "dynamic":  # batch 1: a scale per sample
                    maps = np.concatenate([model.heatmaps(image[None]) for image in images])
                else:
                    maps = model.heatmaps(images)
                xy[name].append(codec.decode(maps)[0])
                in_image[name].append(codec.decode_to_image(maps, crop_to_image)[0])
    indices = np.asarray(val_idx)
    scores = {name: score(source, np.concatenate(pred), indices) for name, pred in in_image.items()}
    metric, _ = main_metric(scores["training"])
    result = {"checkpoint": str(args.checkpoint), "quant": runner.card.network.quant, "input_size": runner.input_size,
              "samples": len(val_idx), "calibration_samples": len(calibration), "metric": metric,
              "training_model": scores["training"][metric], "modes": {}}
    reference = np.concatenate(xy["training"])
    for mode in modes:
        distance = np.linalg.norm(np.concatenate(xy[mode]) - reference, axis=-1).ravel()
        result["modes"][mode] = {
            "mean_px": float(distance.mean()), "median_px": float(np.median(distance)),
            "p95_px": float(np.percentile(distance, 95)), "max_px": float(distance.max()),
            "within_0.5px": float((distance <= 0.5).mean()), metric: scores[mode][metric],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a run's best/ or last/ checkpoint of a BW/TW model")
    parser.add_argument("--data", default="", help="FORMAT:PATH to check on instead of the run's held-out split")
    parser.add_argument("--calibration", type=int, default=32, help="training-split samples to calibrate int8 on")
    parser.add_argument("--max-samples", type=int, default=0, help="check at most this many samples (0: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--keep-input-quantizers", action="store_true",
                        help="export the model's own k-bit input quantizers in front of the int8 convs")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false",
                        help="skip OpenVINO int8 (its quantizer, NNCF, is in the train extra)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except DunetError as err:
        print(f"bench/int8_check.py: error: {err}", file=sys.stderr)
        return 2
    print(f"{result['checkpoint']} ({result['quant']}, {result['input_size']} px): {result['samples']} held-out "
          f"samples; static and OpenVINO int8 calibrated on {result['calibration_samples']}; {result['metric']} of the "
          f"training-time model {result['training_model']:.3f}")
    print(f"{'int8 mode':>9} {'mean px':>8} {'median':>7} {'p95':>7} {'max':>7} {'<=0.5 px':>9} {result['metric']:>8}")
    for mode, d in result["modes"].items():
        print(f"{mode:>9} {d['mean_px']:>8.3f} {d['median_px']:>7.3f} {d['p95_px']:>7.3f} {d['max_px']:>7.3f} "
              f"{100 * d['within_0.5px']:>8.1f}% {d[result['metric']]:>8.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
