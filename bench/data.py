"""Data pipeline throughput against training throughput, so data never starves training.

For each input size: samples/s of the full training pipeline (read or render, augment, crop, colour
jitter, Gaussian targets, collate) through a DataLoader with 2 workers, on real 300-W faces and on the
built-in synthetic faces; and images/s of DU-Net(4) training steps (forward, MSE over all heads,
backward, RMSprop) at batch 8 in this same run. The pipeline must be at least 3x faster than training.

Run by hand (not a test):  .venv/bin/python bench/data.py [--sizes 256 128] [--samples 480] [--steps 3]
Prints a table and writes bench/results/data.json. Both parts are measured alone, one after the other,
on the same (shared) cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from _timing import median_step_seconds  # bench/ is on sys.path when run as a script

from dunet.data import LandmarkDataset, build_loader, open_source
from dunet.models import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"300w": f"300w:{REPO.parent / 'shared' / 'data' / '300w'}", "synthetic": "synthetic:2000:0"}


def pipeline_speed(source_text: str, size: int, samples: int, workers: int, batch: int) -> dict:
    source = open_source(source_text)
    dataset = LandmarkDataset(source, input_size=size, augment=True, seed=0)
    loader = build_loader(dataset, batch_size=batch, workers=workers, drop_last=True)  # training's epoch sampler
    batches = samples // batch
    iterator = iter(loader)
    next(iterator)  # worker start-up and first batch are not steady state
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    del iterator
    return {"samples_per_s": batches * batch / seconds, "samples": batches * batch, "seconds": seconds}


def training_speed(size: int, landmarks: int, batch: int, steps: int) -> dict:
    cfg = ModelConfig(arch="dunet", units=4, landmarks=landmarks, input_size=size)
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    images = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.rand(batch, landmarks, cfg.heatmap_size, cfg.heatmap_size)

    def step() -> None:
        loss = sum(((out - targets) ** 2).mean() for out in model(images))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    seconds = median_step_seconds(step, steps)
    return {"images_per_s": batch / seconds, "step_seconds": seconds, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--samples", type=int, default=480, help="samples timed per pipeline measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per size (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "data.json"))
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        train = training_speed(size, landmarks=68, batch=args.batch, steps=args.steps)
        for name, text in SOURCES.items():
            data = pipeline_speed(text, size, args.samples, args.workers, args.batch)
            rows.append({"size": size, "source": name, "workers": args.workers, "batch": args.batch,
                         "data_samples_per_s": round(data["samples_per_s"], 1),
                         "train_images_per_s": round(train["images_per_s"], 2),
                         "ratio": round(data["samples_per_s"] / train["images_per_s"], 1)})
            print(f"size {size} {name}: data {data['samples_per_s']:.1f}/s, training {train['images_per_s']:.2f}/s",
                  flush=True)

    print()
    header = f"{'size':>5}  {'source':<10} {'data samples/s':>15} {'DU-Net(4) train img/s':>22} {'ratio':>6}  >= 3x"
    print(header)
    print("-" * len(header))
    for r in rows:
        ok = "yes" if r["ratio"] >= 3 else "NO"
        print(f"{r['size']:>5}  {r['source']:<10} {r['data_samples_per_s']:>15.1f} {r['train_images_per_s']:>22.2f} "
              f"{r['ratio']:>6.1f}  {ok}")
    result = {
        "benchmark": "data pipeline vs DU-Net(4) training throughput",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_average": os.getloadavg()},
        "settings": {"workers": args.workers, "batch": args.batch, "samples": args.samples, "steps": args.steps,
                     "augment": "scale 0.75-1.25, rotation +-30, flip, colour x[0.6,1.4]", "target": "gaussian",
                     "training": "DU-Net(4) order 1, 68 landmarks, fp32 channels_last, RMSprop, MSE over all heads"},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
