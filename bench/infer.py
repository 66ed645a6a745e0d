"""Inference speed on this CPU: images/s and latency of DU-Net(4), DU-Net(8) and hourglass(4) at 256 px,
batch 1 and 8, for torch fp32 and bf16, onnxruntime fp32 and int8, and OpenVINO bf16 and int8, side by
side with the machine's peak for each precision measured in the same run (large matmuls).

    .venv/bin/python bench/infer.py                 # full run, 10 timed repeats per cell
    .venv/bin/python bench/infer.py --quick         # 3 repeats
    .venv/bin/python bench/infer.py --models dunet8 --batches 8 --backends torch-bf16,ov-bf16,ov-int8
    .venv/bin/python bench/infer.py --models dunet8 --batches 8 --backends ov-int8 --profile --out bench/results/infer_profile.json

Random weights (speed does not depend on them); BN statistics are set from one train-mode pass so
activations have a trained network's scale (untouched BN lets them decay into slow denormal floats).
Writes bench/results/infer.json. The 2 cores are shared with other work: read ratios, not absolutes,
and check `load_average` in the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunet.deploy import export_onnx, quantize_onnx_int8, quantize_openvino_int8  # noqa: E402
from dunet.engine.inference import TorchNetwork  # noqa: E402
from dunet.runtime.onnxruntime import OnnxPredictor  # noqa: E402
from dunet.runtime.openvino import OpenVinoPredictor  # noqa: E402
from dunet.models import ModelConfig, build_model  # noqa: E402
from _timing import fastest_seconds, machine  # noqa: E402  (bench/ is on sys.path when run as a script)

MODELS = {
    "dunet4": ("DU-Net(4)", dict(arch="dunet", units=4)),
    "dunet8": ("DU-Net(8)", dict(arch="dunet", units=8)),
    "hourglass4": ("hourglass(4)", dict(arch="hourglass", units=4)),
}
BACKENDS = {  # name -> precision whose peak it is compared with
    "torch-fp32": "fp32",
    "torch-bf16": "bf16",
    "ort-fp32": "fp32",
    "ort-int8": "int8",
    "ort-int8-dynamic": "int8",  # not in the default run: onnxruntime's ConvInteger kernel is slow
    "ov-bf16": "bf16",
    "ov-int8": "int8-openvino",
}
RESULTS = Path(__file__).resolve().parent / "results" / "infer.json"


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# peaks


def peak_gflops(threads: int, repeats: int, openvino: bool = False) -> dict[str, dict]:
    """GFLOP/s (GOP/s for int8) of large matrix products: fp32 and bf16 by torch (oneDNN / MKL),
    int8 u8 x s8 by onnxruntime's MatMulInteger (MLAS: VNNI / AMX where present) and, with `openvino`,
    OpenVINO's own int8 kernels on large 1x1 convolutions."""
    n = 2048
    flops = 2 * n**3
    a = torch.randn(n, n)
    peaks = {"fp32": {"gflops": flops / fastest_seconds(lambda: a @ a, repeats) / 1e9, "how": f"torch {n}^3 fp32 matmul"}}
    b = a.bfloat16()
    peaks["bf16"] = {"gflops": flops / fastest_seconds(lambda: b @ b, repeats) / 1e9, "how": f"torch {n}^3 bf16 matmul"}
    session, feed = _matmul_integer_session(n, threads)
    peaks["int8"] = {"gflops": flops / fastest_seconds(lambda: session.run(None, feed), repeats) / 1e9,
                     "how": f"onnxruntime {n}^3 u8s8 MatMulInteger"}
    if openvino:
        peaks["int8-openvino"] = _openvino_int8_peak(threads, repeats)
    return peaks


def _openvino_int8_peak(threads: int, repeats: int, channels: int = 1024, size: int = 32, layers: int = 6) -> dict:
    """Six 1x1 convolutions 1024 -> 1024 on 32x32 maps, batch 8, quantized by NNCF and run by OpenVINO."""
    import logging

    import nncf
    import openvino

    nncf.set_log_level(logging.WARNING)
    net = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.ReLU())
                          for _ in range(layers)]).eval()
    x = torch.rand(8, channels, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "peak.onnx"
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice: it is the fast one here
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, x, str(path), dynamo=False)
        model = openvino.Core().read_model(str(path))
    quantized = nncf.quantize(model, nncf.Dataset([x.numpy()]), subset_size=1, preset=nncf.QuantizationPreset.PERFORMANCE,
                              advanced_parameters=nncf.AdvancedQuantizationParameters(
                                  overflow_fix=nncf.OverflowFix.DISABLE))
    compiled = openvino.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                "PERFORMANCE_HINT": "LATENCY"})
    request, feed = compiled.create_infer_request(), {0: x.numpy()}
    ops = 2 * x.shape[0] * size * size * channels * channels * layers
    return {"gflops": ops / fastest_seconds(lambda: request.infer(feed), repeats) / 1e9,
            "how": f"OpenVINO int8, {layers} 1x1 convs {channels}->{channels} on {size}x{size}, batch 8"}


def _matmul_integer_session(n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (n, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}


# ---------------------------------------------------------------------------------------------
# models


def build(name: str, size: int) -> nn.Module:
    model = build_model(ModelConfig(input_size=size, **MODELS[name][1]))
    # BN statistics from one train-mode pass (cumulative average): trained-network activation scale.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, size, size))
    return model.eval()


def conv_gflops(model: nn.Module, size: int) -> float:
    """Multiply-adds x 2 of every convolution for one image."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        total += 2 * output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total / 1e9


def make_predictors(model: nn.Module, size: int, backends: list[str], workdir: Path, args) -> dict:
    predictors = {}
    if "torch-fp32" in backends:
        predictors["torch-fp32"] = TorchNetwork(copy.deepcopy(model), "fp32")
    if "torch-bf16" in backends:
        predictors["torch-bf16"] = TorchNetwork(copy.deepcopy(model), "bf16", compile=args.compile)
    if any(b.startswith(("ort-", "ov-")) for b in backends):
        fp32 = export_onnx(model, workdir / "model.onnx", size, exporter=args.exporter)
        rng = np.random.default_rng(0)
        calibration = [rng.random((2, 3, size, size), dtype=np.float32) for _ in range(2)]
        if "ort-fp32" in backends:
            predictors["ort-fp32"] = OnnxPredictor(fp32, threads=args.threads)
        if "ort-int8" in backends:
            int8 = quantize_onnx_int8(fp32, workdir / "model.int8.onnx", calibration)
            predictors["ort-int8"] = OnnxPredictor(int8, threads=args.threads)
        if "ort-int8-dynamic" in backends:
            dynamic = quantize_onnx_int8(fp32, workdir / "model.int8-dynamic.onnx", mode="dynamic")
            predictors["ort-int8-dynamic"] = OnnxPredictor(dynamic, threads=args.threads)
        # The profile reads the counters of the one-request (latency) mode.
        properties = {"PERF_COUNT": True} if args.profile else None
        ov = dict(threads=args.threads, streams=1 if args.profile else args.streams, properties=properties)
        if "ov-bf16" in backends:
            predictors["ov-bf16"] = OpenVinoPredictor(fp32, "bf16", **ov)
        if "ov-int8" in backends:
            int8 = quantize_openvino_int8(fp32, workdir / "model-int8.xml", calibration)
            predictors["ov-int8"] = OpenVinoPredictor(int8, "bf16", **ov)
    return predictors


# ---------------------------------------------------------------------------------------------
# report


def openvino_profile(predictor: OpenVinoPredictor, batch: int) -> dict[str, float]:
    """ms per image of the last inference by kind of operation, from OpenVINO's per-node counters."""
    kinds = {"Convolution": "conv", "Concat": "concat", "FakeQuantize": "bn_relu_quantize",
             "MulAdd": "bn_relu_quantize", "Subgraph": "bn_relu_quantize", "Eltwise": "bn_relu_quantize"}
    profile: dict[str, float] = {}
    for node in predictor.last_request.profiling_info:
        kind = kinds.get(node.node_type, "other")
        profile[kind] = profile.get(kind, 0.0) + node.real_time.total_seconds() * 1e3 / batch
    return profile


def print_table(results: dict) -> None:
    peaks = results["peaks"]
    print()
    print("peaks (same run): " + ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s" for k, v in peaks.items()))
    backends = results["backends"]
    header = f"{'model':<13} {'batch':>5}  " + "  ".join(f"{b:>24}" for b in backends)
    print(header)
    print(f"{'':<13} {'':>5}  " + "  ".join(f"{'img/s  ms/batch  %peak':>24}" for _ in backends))
    for row in results["rows"]:
        cells = []
        for backend in backends:
            cell = row["backends"].get(backend)
            cells.append(f"{'-':>24}" if cell is None else
                         f"{cell['images_per_s']:>7.1f} {cell['latency_ms']:>9.0f} {cell['percent_of_peak']:>6.1f}%")
        print(f"{row['label']:<13} {row['batch']:>5}  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed repeats instead of 10")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--backends", default="torch-fp32,torch-bf16,ort-fp32,ort-int8,ov-bf16,ov-int8", help=f"comma list of {', '.join(BACKENDS)}")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--streams", type=int, default=2,
                        help="OpenVINO paths: a batch is split over this many streams (1: one request on all threads)")
    parser.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                        help="ONNX exporter (same runtime speed; torchscript exports ~5x faster)")
    parser.add_argument("--compile", action="store_true", help="torch bf16 through torch.compile (minutes per model)")
    parser.add_argument("--profile", action="store_true",
                        help="OpenVINO paths: also report ms per image in convolutions, BN-ReLU(-quantize) passes, "
                             "concatenations and the rest (OpenVINO's per-node counters; slows them a little)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    backends = [b for b in args.backends.split(",") if b]
    for name in models + backends:
        if name not in MODELS and name not in BACKENDS:
            parser.error(f"unknown model or backend {name!r}")
    batches = [int(b) for b in args.batches.split(",")]
    repeats = 3 if args.quick else 10
    torch.set_num_threads(args.threads)

    results = {
        "machine": {**machine(), "threads": args.threads, "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": _ort_version(),
                    "openvino": _ov_version()},
        "settings": {"size": args.size, "repeats": repeats, "exporter": args.exporter, "compile": args.compile,
                     "openvino_streams": args.streams},
        "load_average_start": os.getloadavg(),
        "backends": backends,
        "rows": [],
    }
    print(f"peaks ({repeats} repeats)...", flush=True)
    results["peaks"] = peak_gflops(args.threads, repeats, openvino=any(b.startswith("ov-") for b in backends))
    for name in models:
        label = MODELS[name][0]
        print(f"{label}: building, exporting, quantizing...", flush=True)
        model = build(name, args.size)
        gflops = conv_gflops(model, args.size)
        with tempfile.TemporaryDirectory() as tmp:
            predictors = make_predictors(model, args.size, backends, Path(tmp), args)
            for batch in batches:
                images = np.random.default_rng(1).random((batch, 3, args.size, args.size), dtype=np.float32)
                row = {"model": name, "label": label, "batch": batch, "gflop_per_image": gflops, "backends": {}}
                for backend, predictor in predictors.items():
                    seconds = median_seconds(lambda: predictor(images), repeats)
                    rate = batch / seconds
                    peak = results["peaks"][BACKENDS[backend]]["gflops"]
                    row["backends"][backend] = {
                        "images_per_s": rate, "latency_ms": seconds * 1e3,
                        "gflops": rate * gflops, "percent_of_peak": 100 * rate * gflops / peak,
                    }
                    print(f"  {label} batch {batch} {backend}: {rate:.1f} img/s, {seconds * 1e3:.0f} ms", flush=True)
                    if args.profile and backend.startswith("ov-"):
                        profile = openvino_profile(predictor, batch)
                        row["backends"][backend]["profile_ms_per_image"] = profile
                        print("    ms/image: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(profile.items())))
                results["rows"].append(row)
    results["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\nload average at start {results['load_average_start'][0]:.1f}, at end {results['load_average_end'][0]:.1f} "
          f"(2 cores); wrote {args.out}")
    return 0


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _ov_version() -> str:
    try:
        import openvino
    except ImportError:
        return "not installed"
    return openvino.__version__


if __name__ == "__main__":
    sys.exit(main())
