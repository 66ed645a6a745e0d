"""Training throughput on this CPU: images/s and achieved GFLOP/s of DU-Net(4), DU-Net(8) and hourglass(4)
at 128 and 256 px, fp32 and bf16, next to the machine's peak for the same precision measured in the same run
(a large matmul). Run by hand:  .venv/bin/python bench/train.py [--quick] [--sizes 128 256]
Like `dunet train`, it keeps freed memory in the process (`--default-malloc` measures without).

A training step costs about 3x the forward MACs (forward, input gradients, weight gradients); GFLOP/s counts
2 FLOPs per multiply-accumulate.

`--conv-ceiling` also times every convolution of the model on its own, at the shape and precision it has in
the step (forward, input and weight gradients, nothing else): the step's FLOPs over that time is the most
the step could reach with these conv kernels if everything else (BN, ReLU, concat, optimizer) were free.

`--bn-floor` also times every BN -> ReLU of the model on its own (forward and backward, as PyTorch runs it),
and sets a floor under it: a fused BN-ReLU kernel must still stream its input about 7 times per step
(forward: statistics, then normalise-and-clip; backward: two reductions, then the input gradient), timed
as 3.5 tensor copies at the same shape. convs / (convs + floor) is then the most of the conv-only ceiling
a step can reach while BN-ReLU stays a separate pass, however well it is fused.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn
from _timing import machine, median_step_seconds  # bench/ is on sys.path when run as a script

from dunet.engine.allocator import keep_freed_memory
from dunet.engine.hardware import autocast as autocast_for
from dunet.engine.hardware import choose_precision, resolve_device
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


def train_speed(name: str, size: int, precision: str, batch: int, steps: int, memory_efficient: bool,
                conv_ceiling: bool = False, bn_floor: bool = False, device: torch.device = torch.device("cpu")) -> dict:
    cfg = ModelConfig(landmarks=16, input_size=size, memory_efficient=memory_efficient, **MODELS[name])
    model = build_model(cfg).train().to(device, memory_format=torch.channels_last)
    opt = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, 16, cfg.heatmap_size, cfg.heatmap_size, device=device)
    autocast = autocast_for(precision, device)

    def step():
        with autocast:
            outs = model(x)
        loss = sum(((o.float() - target) ** 2).mean() for o in outs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time the work, not its launch

    seconds = median_step_seconds(step, steps)
    flops = 3 * 2 * count_macs(cfg) * batch
    row = {"model": name, "size": size, "precision": precision, "batch": batch,
           "images_per_s": batch / seconds, "gflops": flops / seconds / 1e9}
    if conv_ceiling:
        conv_seconds = conv_only_seconds(model, x, autocast, steps)
        row.update(conv_seconds_share=conv_seconds / seconds, conv_ceiling_gflops=flops / conv_seconds / 1e9)
        if bn_floor:
            eager, floor = bn_relu_seconds(model, x, autocast, steps)
            row.update(bn_relu_seconds_share=eager / seconds, bn_relu_floor_share=floor / seconds,
                       best_conv_share=conv_seconds / (conv_seconds + floor))
    return row


# A fused BN-ReLU reads or writes its input's size this many times per training step; a copy moves it twice.
BN_RELU_PASSES = 7


def bn_relu_seconds(model: nn.Module, x: torch.Tensor, autocast, steps: int) -> tuple[float, float]:
    """Seconds per training step of the model's BN -> ReLU units, each timed alone at its input shape:
    (as PyTorch runs them, a floor for any fused kernel: BN_RELU_PASSES / 2 copies of the input)."""
    groups: dict[tuple, list] = {}

    def record(norm, inputs, output):
        inp = inputs[0]
        groups.setdefault((norm.num_features, tuple(inp.shape), inp.dtype), [norm, inp, 0])[2] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad(), autocast:
        model(x)
    for hook in hooks:
        hook.remove()
    eager = floor = 0.0
    for norm, inp, calls in groups.values():
        layer = copy.deepcopy(norm)
        data = torch.randn(inp.shape, dtype=inp.dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn_like(data)
        copied = torch.empty_like(data, requires_grad=False)

        def bn_relu_step():
            layer.zero_grad(set_to_none=True)
            with autocast:
                y = torch.relu(layer(data))
            y.backward(grad)

        eager += calls * median_step_seconds(bn_relu_step, steps)
        floor += calls * BN_RELU_PASSES / 2 * median_step_seconds(lambda: copied.copy_(data.detach()), steps)
    return eager, floor


def conv_only_seconds(model: nn.Module, x: torch.Tensor, autocast, steps: int) -> float:
    """Seconds the model's convolutions need per training step, each timed alone at its own input shape."""
    # Layers of the same configuration at the same input shape cost the same: time one of each.
    groups: dict[tuple, list] = {}

    def record(conv, inputs, output):
        inp = inputs[0]
        key = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.groups,
               conv.bias is not None, tuple(inp.shape), inp.dtype)
        groups.setdefault(key, [conv, inp, output, 0])[3] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad(), autocast:
        model(x)
    for hook in hooks:
        hook.remove()
    total = 0.0
    for conv, inp, out, calls in groups.values():
        layer = copy.deepcopy(conv)
        data = torch.randn(inp.shape, dtype=inp.dtype).contiguous(memory_format=torch.channels_last)
        data.requires_grad_(inp.shape[1] != 3)  # the stem's input needs no gradient, as in the step
        grad = torch.randn(out.shape, dtype=out.dtype).contiguous(memory_format=torch.channels_last)

        def conv_step():
            layer.zero_grad(set_to_none=True)
            with autocast:
                y = layer(data)
            y.backward(grad)

        total += calls * median_step_seconds(conv_step, steps)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--precisions", nargs="+", default=["auto"],
                        help="auto (bf16 where the hardware has it natively, else fp32), fp32, bf16; several to compare")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (peaks and ceilings are CPU-only)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one measured step")
    parser.add_argument("--memory-efficient", action="store_true")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (training keeps freed memory; see dunet/engine/allocator.py)")
    parser.add_argument("--conv-ceiling", action="store_true", help="also time the convolutions alone")
    parser.add_argument("--bn-floor", action="store_true",
                        help="with --conv-ceiling: also time BN-ReLU alone and the floor of a fused BN-ReLU")
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.precisions = list(dict.fromkeys(choose_precision(p, device)[0] for p in args.precisions))
    print(f"{machine()['cpu']}, device {device}, precisions {args.precisions}, {torch.get_num_threads()} threads")
    torch.set_num_threads(torch.get_num_threads())
    kept = False if args.default_malloc else keep_freed_memory()  # as dunet train does
    def measure_peaks() -> dict[str, float]:
        return {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16) for p in args.precisions}

    # The peak is taken before and after the rows, and the higher kept: on a shared VM one measurement can be
    # well below the machine's speed (seen: 176 vs 316 GFLOP/s fp32 on the same AMX Xeon, minutes apart).
    peaks_before = measure_peaks()
    rows = []
    for size in args.sizes:
        for name in args.models:
            for precision in args.precisions:
                row = train_speed(name, size, precision, args.batch, 1 if args.quick else args.steps,
                                  args.memory_efficient, args.conv_ceiling and device.type == "cpu", args.bn_floor,
                                  device)
                rows.append(row)
                print(f"{name:<11} {size:>4}px {precision:<5} {row['images_per_s']:7.1f} img/s "
                      f"{row['gflops']:8.1f} GFLOP/s  (peak so far {peaks_before[precision]:.0f})", flush=True)
    peaks_after = measure_peaks()
    peaks = {p: max(peaks_before[p], peaks_after[p]) for p in args.precisions}
    print("peaks (GFLOP/s, higher of before and after): " + ", ".join(
        f"{p} {peaks[p]:.0f} ({peaks_before[p]:.0f} / {peaks_after[p]:.0f})" for p in args.precisions))
    for row in rows:
        peak = peaks[row["precision"]]
        row["peak_gflops"] = peak
        row["fraction_of_peak"] = row["gflops"] / peak
        print(f"{row['model']:<11} {row['size']:>4}px {row['precision']:<5} {row['images_per_s']:7.1f} img/s "
              f"{row['gflops']:8.1f} GFLOP/s  peak {peak:8.1f}  {row['fraction_of_peak']:6.1%}" + (
                  f"  convs alone {row['conv_ceiling_gflops'] / peak:6.1%} of peak, "
                  f"{row['conv_seconds_share']:5.1%} of the step" if args.conv_ceiling else "") + (
                  f"; BN-ReLU {row['bn_relu_seconds_share']:5.1%} of the step, fused floor "
                  f"{row['bn_relu_floor_share']:5.1%}, so at best {row['best_conv_share']:5.1%} of the ceiling"
                  if "best_conv_share" in row else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "threads": torch.get_num_threads(), "memory_efficient": args.memory_efficient,
                               "keeps_freed_memory": kept,
                               "peaks_gflops": peaks, "peaks_before_gflops": peaks_before,
                               "peaks_after_gflops": peaks_after, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
