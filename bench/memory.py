"""Peak training memory of naive vs memory-efficient DU-Net against the number of U-Nets (paper Fig. 5).

Each configuration (units, mode, quant) is measured in a fresh process (bench/_memory_worker.py, which
documents exactly what is measured). The figure compared is `train`: peak RSS growth over one training
step (activations, grads, buffers) plus parameters, optimizer state and the batch, i.e. what training
needs beyond the Python/torch runtime.

    .venv/bin/python bench/memory.py                      # defaults: 128 px, batch 8, N = 1..16, fp32
    .venv/bin/python bench/memory.py --units 1,2 --quant none,8/1/8 --budget-gb 0.5

Prints a table, the efficient/naive ratio per N and, for a memory budget, the deepest DU-Net each mode
fits; writes JSON (--out) and a PNG plot beside it. The default budget is the naive fp32 memory at 9
U-Nets (interpolated), the paper's setting where a 12 GB GPU fits 9 naive U-Nets at batch 16, 256 px.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dunet import DunetError  # noqa: E402

WORKER = Path(__file__).resolve().with_name("_memory_worker.py")
MODES = {"naive": False, "efficient": True}
GB = 1024**3
MB = 1024**2
# glibc caches freed heap memory and raises its mmap threshold after big frees, so RSS would keep
# the previous step's activations and hide the next step's peak. A fixed threshold (which also
# turns the dynamic one off) hands every tensor >= 64 KB back to the kernel when it is freed.
# torch's CPU allocator has no cache of its own, so RSS then follows the live tensors.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}


def measure(units: int, memory_efficient: bool, quant: str = "none", *, input_size: int = 128, batch: int = 8,
            threads: int = 1, model_overrides: dict | None = None, timeout: float | None = None,
            device: str = "cpu") -> dict:
    """Measure one configuration in a fresh process; returns the worker's figures (bytes, seconds)
    plus the configuration. A configuration dunet rejects (e.g. an unsupported quant) raises DunetError."""
    model = dict(units=units, order=1, landmarks=16, input_size=input_size,
                 memory_efficient=memory_efficient, quant=quant)
    model.update(model_overrides or {})
    spec = {"model": model, "batch": batch, "threads": threads, "device": device}
    env = {**MALLOC_ENV, **os.environ}  # the user's own malloc settings win
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if "error" in result:
        raise DunetError(f"configuration units={units} memory_efficient={memory_efficient} quant={quant!r}: "
                         f"{result['error']}")
    if proc.returncode != 0 or not result:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise DunetError(f"memory worker failed for units={units} memory_efficient={memory_efficient} "
                         f"quant={quant!r} (exit {proc.returncode}): {tail[0]}")
    mode = "efficient" if memory_efficient else "naive"
    return {"units": units, "mode": mode, "quant": quant, "input_size": input_size, "batch": batch, **result}


def memory_at(points: dict[int, float], units: float) -> float:
    """Memory at `units` U-Nets: linear interpolation between measured unit counts, linear
    extrapolation from the two nearest ones outside them. Needs at least two points."""
    xs = sorted(points)
    if len(xs) < 2:
        raise ValueError("need at least two unit counts to interpolate")
    if units <= xs[0]:
        lo, hi = xs[0], xs[1]
    elif units >= xs[-1]:
        lo, hi = xs[-2], xs[-1]
    else:
        hi = next(x for x in xs if x >= units)
        lo = xs[xs.index(hi) - 1]
    slope = (points[hi] - points[lo]) / (hi - lo)
    return points[lo] + slope * (units - lo)


def deepest_units(points: dict[int, float], budget: float, limit: int = 1000) -> tuple[int, bool]:
    """Largest number of U-Nets whose memory fits `budget` (0 if none), and whether that needed
    extrapolating beyond the largest measured unit count. Memory grows with N, so scan upwards."""
    deepest = 0
    for units in range(1, limit + 1):
        if memory_at(points, units) > budget:
            break
        deepest = units
    return deepest, deepest > max(points)


def check_quant(quant: str) -> None:
    """Fail before the long run if dunet.quant cannot build `quant`."""
    if quant == "none":
        return
    from dunet.models import ModelConfig, build_model

    tiny = ModelConfig(units=1, input_size=64, channels=8, growth=4, bottleneck=8, landmarks=2, quant=quant)
    try:
        build_model(tiny)
    except (DunetError, ValueError, NotImplementedError) as err:
        raise DunetError(f"--quant {quant!r} is not supported by dunet.quant: {err}") from None


def parse_list(text: str, kind: type, name: str) -> list:
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DunetError(f"--{name}: expected a comma-separated list, got {text!r}") from None
    if not values:
        raise DunetError(f"--{name}: empty list")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--units", default="1,2,4,8,12,16", help="comma-separated numbers of U-Nets")
    parser.add_argument("--modes", default="naive,efficient", help="naive, efficient or both")
    parser.add_argument("--quant", default="none", help="comma-separated quant specs, e.g. none,8/1/8,6/1/6")
    parser.add_argument("--budget-gb", type=float, default=None,
                        help="memory budget; default: naive fp32 memory at 9 U-Nets (interpolated)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (the CPU is shared)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (peak RSS) or cuda[:N] (torch.cuda.max_memory_allocated, the paper's Fig. 5 "
                             "measure; e.g. --device cuda --input-size 256 --batch 16 --units 4,8,16)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory.json",
                        help="JSON results; the plot goes beside it with a .png suffix")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print saved-for-backward bytes by module for the deepest N of each mode")
    return parser


def print_row(row: dict) -> None:
    print(f"{row['units']:>3} {row['mode']:>9} {row['quant']:>6} {row['train_bytes'] / MB:>9.0f} "
          f"{row['step_peak_bytes'] / MB:>9.0f} {row['saved_bytes'] / MB:>9.0f} {row['params'] / 1e6:>7.2f} "
          f"{row['step_seconds']:>7.1f}", flush=True)


def curves(rows: list[dict]) -> dict[tuple[str, str], dict[int, float]]:
    """(mode, quant) -> {units: train bytes}."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        out.setdefault((row["mode"], row["quant"]), {})[row["units"]] = row["train_bytes"]
    return out


def plot(lines: dict[tuple[str, str], dict[int, float]], budget: float | None, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (mode, quant), points in lines.items():
        xs = sorted(points)
        label = mode if quant == "none" else f"{mode}, {quant}"
        ax.plot(xs, [points[x] / GB for x in xs], marker="o", linestyle="-" if mode == "naive" else "--",
                label=label)
    if budget is not None:
        ax.axhline(budget / GB, color="gray", linestyle=":", label=f"budget {budget / GB:.2f} GB")
    ax.set_xlabel("number of U-Nets")
    ax.set_ylabel("peak training memory (GB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DunetError as err:
        print(f"bench/memory.py: error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    units_list = parse_list(args.units, int, "units")
    modes = parse_list(args.modes, str, "modes")
    quants = parse_list(args.quant, str, "quant")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise DunetError(f"--modes: unknown {unknown}; allowed: {sorted(MODES)}")
    for quant in quants:
        check_quant(quant)
    if args.device != "cpu":
        from dunet.engine.hardware import resolve_device

        resolve_device(args.device)  # one clear line on a machine without a GPU, before any row runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"input_size": args.input_size, "batch": args.batch, "order": 1, "landmarks": 16,
                "threads": args.threads, "device": args.device, "malloc_env": {k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}}
    print(f"DU-Net training memory on {args.device}, {args.input_size} px, batch {args.batch}, order 1, "
          f"{args.threads} thread(s); one fresh process per row")
    print(f"{'N':>3} {'mode':>9} {'quant':>6} {'train MB':>9} {'step MB':>9} {'saved MB':>9} "
          f"{'params M':>7} {'s/step':>7}")
    rows: list[dict] = []
    for quant in quants:
        for mode in modes:
            for units in units_list:
                row = measure(units, MODES[mode], quant, input_size=args.input_size, batch=args.batch,
                              threads=args.threads, device=args.device)
                rows.append(row)
                print_row(row)
                args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))

    lines = curves(rows)
    if "naive" in modes and "efficient" in modes:
        print("\nefficient / naive training memory:")
    for quant in quants:
        naive, efficient = lines.get(("naive", quant)), lines.get(("efficient", quant))
        if naive and efficient:
            ratios = "  ".join(f"N={n}: {efficient[n] / naive[n]:.2f}" for n in sorted(naive) if n in efficient)
            print(f"  quant {quant}: {ratios}")
    if len(quants) > 1 and "none" in quants:
        print("\nquantized / fp32 training memory:")
        for mode in modes:
            fp32 = lines.get((mode, "none"), {})
            for quant in quants:
                quantized = lines.get((mode, quant), {})
                if quant != "none" and fp32 and quantized:
                    ratios = "  ".join(f"N={n}: {quantized[n] / fp32[n]:.2f}" for n in sorted(fp32) if n in quantized)
                    print(f"  {mode} {quant}: {ratios}")

    budget, budget_source = None, None
    if args.budget_gb is not None:
        budget, budget_source = args.budget_gb * GB, "--budget-gb"
    elif len(lines.get(("naive", "none"), {})) >= 2:
        budget = memory_at(lines[("naive", "none")], 9)
        budget_source = "naive fp32 memory at N=9 (interpolated), so naive fits 9 by construction"
    deepest: dict[str, dict] = {}
    if budget is None:
        print("\nno budget: pass --budget-gb or measure naive fp32 at two or more unit counts")
    else:
        print(f"\nbudget {budget / GB:.3f} GB ({budget_source}); deepest DU-Net that fits:")
        for (mode, quant), points in lines.items():
            if len(points) < 2:
                print(f"  {mode:>9} quant {quant}: needs two or more unit counts")
                continue
            n, extrapolated = deepest_units(points, budget)
            deepest[f"{mode}/{quant}"] = {"units": n, "extrapolated": extrapolated}
            note = f" (extrapolated linearly beyond N={max(points)})" if extrapolated else ""
            print(f"  {mode:>9} quant {quant}: {n} U-Nets{note}")
        for quant in quants:
            naive, efficient = deepest.get(f"naive/{quant}"), deepest.get(f"efficient/{quant}")
            if naive and efficient and naive["units"]:
                print(f"  quant {quant}: efficient fits {efficient['units'] / naive['units']:.2f}x "
                      f"as many U-Nets as naive")

    if args.breakdown:
        for (mode, quant), points in lines.items():
            row = next(r for r in rows if (r["mode"], r["quant"], r["units"]) == (mode, quant, max(points)))
            print(f"\nsaved for backward, {mode} quant {quant} N={row['units']}: {row['saved_bytes'] / MB:.0f} MB")
            for title, table in (("module", row["saved_by_module"]), ("producing op", row["saved_by_producer"])):
                print(f"  by {title}:")
                for name, nbytes in table.items():
                    print(f"    {name:<32} {nbytes / MB:>8.1f} MB")

    report = {"settings": settings, "rows": rows, "budget_bytes": budget, "budget_source": budget_source,
              "deepest": deepest}
    args.out.write_text(json.dumps(report, indent=1))
    png = args.out.with_suffix(".png")
    plot(lines, budget, f"DU-Net order 1, {args.input_size} px, batch {args.batch} (CPU, peak RSS)", png)
    print(f"\nwrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
