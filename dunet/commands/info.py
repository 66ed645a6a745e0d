"""`dunet info`: parameters, conv parameters, MACs and file size of an architecture, and the backend that runs\nmodels by default."""

from __future__ import annotations

import argparse
import json

from dunet.config import from_dict


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters, MACs and weight-file size of a model configuration")
    p.add_argument("--arch", default="dunet", choices=["dunet", "hourglass"])
    p.add_argument("--block", default="bottleneck", choices=["bottleneck", "hierarchical"])
    p.add_argument("--units", type=int, default=4, help="U-Nets (dunet) or stacks (hourglass)")
    p.add_argument("--order", type=int, default=1, help="order-K connectivity (dunet)")
    p.add_argument("--landmarks", type=int, default=16)
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=0, help="width; 0 = the paper's")
    p.add_argument("--refine", action="store_true", help="iterative refinement (dunet)")
    p.add_argument("--quant", default="none", help="quantization spec, e.g. bw, bw-alpha, tw, 8/1/8")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet.models import ModelConfig
    from dunet.runtime import backends

    cfg = from_dict(ModelConfig, {
        "arch": args.arch, "block": args.block, "units": args.units, "order": args.order,
        "landmarks": args.landmarks, "input_size": args.input_size, "channels": args.channels,
        "refine": args.refine, "quant": args.quant,
    })
    backend = backends.fastest()  # what `dunet.load`, eval and predict run by default
    if not backends.installed("torch"):  # the counts come from the PyTorch network
        print(f"default backend  {backend} (the fastest installed runtime; --backend to choose)\n"
              f"parameters, MACs and sizes: {backends.BACKENDS['torch'].install}")
        return 0
    from dunet.models.profile import profile

    info = {**profile(cfg), "backend": backend}
    if args.json:
        print(json.dumps(info))
        return 0
    rows = [
        ("architecture", f"{cfg.arch} ({cfg.block}), {cfg.units} units" + (f", order {cfg.order}" if cfg.arch == "dunet" else "")),
        ("landmarks", str(cfg.landmarks)),
        ("input size", f"{cfg.input_size} px -> heatmaps {cfg.heatmap_size} px"),
        ("parameters", f"{info['params']:,} ({info['params'] / 1e6:.2f}M)"),
        ("conv parameters", f"{info['conv_params']:,} ({info['conv_params'] / 1e6:.2f}M)"),
        ("MACs per image", f"{info['macs']:,} ({info['macs'] / 1e9:.2f} G)"),
        ("fp32 weights", f"{info['fp32_bytes'] / 2**20:.2f} MiB"),
    ]
    rows.append(("default backend", f"{info['backend']} (the fastest installed runtime; --backend to choose)"))
    if "packed_bytes" in info:
        rows.append(("packed weights", f"{info['packed_bytes'] / 2**20:.3f} MiB ({info['packed_bytes'] / info['fp32_bytes']:.1%})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
