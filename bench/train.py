"""Training throughput on this CPU: images/s and achieved GFLOP/s of DU-Net(4), DU-Net(8) and hourglass(4)
at 128 and 256 px, fp32 and bf16, next to the machine's peak for the same precision measured in the same run
(a large matmul). Run by hand:  .venv/bin/python bench/train.py [--quick] [--sizes 128 256]

A training step costs about 3x the forward MACs (forward, input gradients, weight gradients); GFLOP/s counts
2 FLOPs per multiply-accumulate.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from _timing import machine, median_step_seconds  # bench/ is on sys.path when run as a script

from dunet.models import ModelConfig, build_model
from dunet.models.profile import count_macs

MODELS = {"dunet4": dict(arch="dunet", units=4), "dunet8": dict(arch="dunet", units=8),
          "hourglass4": dict(arch="hourglass", units=4)}


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5, blocks: int = 5) -> float:
    """GFLOP/s of an n^3 matmul: the best of `blocks` timed blocks, since a peak is what the machine
    can do and a single block on this shared VM reads up to 20 % low."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def train_speed(name: str, size: int, precision: str, batch: int, steps: int, memory_efficient: bool) -> dict:
    cfg = ModelConfig(landmarks=16, input_size=size, memory_efficient=memory_efficient, **MODELS[name])
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    opt = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, 16, size // 4, size // 4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def step():
        with autocast:
            outs = model(x)
        loss = sum(((o.float() - target) ** 2).mean() for o in outs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = median_step_seconds(step, steps)
    macs = count_macs(cfg)
    return {"model": name, "size": size, "precision": precision, "batch": batch,
            "images_per_s": batch / seconds, "gflops": 3 * 2 * macs * batch / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one measured step")
    parser.add_argument("--memory-efficient", action="store_true")
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    peaks = {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16) for p in args.precisions}
    rows = []
    for size in args.sizes:
        for name in args.models:
            for precision in args.precisions:
                row = train_speed(name, size, precision, args.batch, 1 if args.quick else args.steps,
                                  args.memory_efficient)
                row["peak_gflops"] = peaks[precision]
                row["fraction_of_peak"] = row["gflops"] / peaks[precision]
                rows.append(row)
                print(f"{name:<11} {size:>4}px {precision:<5} {row['images_per_s']:7.1f} img/s "
                      f"{row['gflops']:8.1f} GFLOP/s  peak {peaks[precision]:8.1f}  "
                      f"{row['fraction_of_peak']:6.1%}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "threads": torch.get_num_threads(), "memory_efficient": args.memory_efficient,
                               "peaks_gflops": peaks, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
