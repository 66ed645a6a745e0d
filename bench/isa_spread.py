"""How far the shipped models' held-out figures move with the CPU kernels that compute them: the source of the
tolerances in tests/engine/test_pretrained.py.

oneDNN (in PyTorch and in OpenVINO's CPU plugin) and ATen pick their kernels by the CPU's instruction sets, and
kernels round differently: int8 most of all (VNNI and AMX accumulate int8 products in other orders, with other
saturation rules, than AVX2's emulation). Each row is `dunet eval --split val` of a shipped model in a fresh
process under one ISA cap; a cap makes this CPU compute as a smaller one does:

    AVX2               AMD Zen 3 and other AVX2-only CPUs
    AVX512_CORE        Skylake-SP Xeons (AVX-512, no VNNI)
    AVX512_CORE_VNNI   Ice Lake Xeons (VNNI, no bf16)
    AVX512_CORE_BF16   AMD Zen 4, Cooper Lake (VNNI and bf16)
    (none)             this CPU's own kernels (AMX on Sapphire Rapids and later)

A cap above what the CPU has changes nothing, so run it on the newest CPU at hand to see every row.

    .venv/bin/python bench/isa_spread.py [--data-root ../shared/data] [--models NAME ...] [--out JSON]

Prints a table per figure (the card's value, each cap's, and the largest distance from the card) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _timing import machine  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ONEDNN_MAX_CPU_ISA caps oneDNN in PyTorch and in OpenVINO's CPU plugin; ATEN_CPU_CAPABILITY caps PyTorch's own
# vectorised kernels, which only know avx2 and avx512.
CAPS = {
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "AVX512_CORE_VNNI": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
    "AVX512_CORE_BF16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "none": {},
}


def evaluate(name: str, data: str, backend: str, cap: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                                                             "ATEN_CPU_CAPABILITY")}
    cmd = [sys.executable, "-m", "dunet", "eval", "--model", name, "--data", data, "--split", "val", "--json",
           "--precision", "fp32", "--backend", backend, "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, **cap}, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def main() -> None:
    from dunet.runtime.pretrained import held_out_source, list_pretrained, recorded_figures

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--models", nargs="*", help="default: every shipped model")
    parser.add_argument("--caps", nargs="*", default=list(CAPS), choices=list(CAPS))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "isa_spread.json"))
    args = parser.parse_args()

    rows = []
    for entry in list_pretrained():
        if args.models and entry["name"] not in args.models:
            continue
        data = held_out_source(entry["name"], args.data_root)
        cards = [("torch", entry["validation"])]
        if "openvino_int8" in entry:
            cards.append(("openvino", entry["openvino_int8"]["validation"]))
        for backend, validation in cards:
            figures, _ = recorded_figures(validation)
            results = {cap: evaluate(entry["name"], data, backend, CAPS[cap]) for cap in args.caps}
            for key, text in figures.items():
                values = {cap: results[cap][key] for cap in args.caps}
                spread = max(abs(v - float(text)) for v in values.values())
                rows.append({"model": entry["name"], "backend": backend, "figure": key, "card": text,
                             "values": values, "max_from_card": spread})
                print(f"{entry['name']:28s} {backend:9s} {key:9s} card {text:>7s}  "
                      + "  ".join(f"{cap} {v:.4f}" for cap, v in values.items())
                      + f"  max |d| {spread:.4f}", flush=True)

    result = {"machine": machine(), "caps": {cap: CAPS[cap] for cap in args.caps}, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
