"""Training images/s of a recipe for each (precision, intra-op threads, data workers), through the real
data pipeline and training step, all in one run so the rows compare as ratios. It measures the choices
that `precision: auto`, `threads: 0` and `data.workers: -1` make (dunet/engine/hardware.py).

    .venv/bin/python bench/threads.py [--config dunet/configs/demo.yaml] [--steps 40]
    .venv/bin/python bench/threads.py --inference 300w-dunet2-w80 [--backends torch onnx openvino]
    .venv/bin/python bench/threads.py --late-work [--seconds 40]

Prints a table and writes bench/results/threads.json. Each row runs `--steps` batches after `--warmup`
batches; the rows are timed in two interleaved rounds and the faster round is kept, so a slow moment
of a shared VM does not land on one row alone. `--inference MODEL`: instead, the median time per face of a
pretrained model (`dunet.load(MODEL).predict(image, box)`, one face at a time as video runs it) for each
backend at each thread count and at `threads=0` (auto), with the cores other work keeps busy noted.
`--late-work`: a training that starts on a quiet machine with every core, then a busy loop starts on one
core; its images/s over the next `--seconds`, with its threads kept and with them following the free cores
(FreeCoreWatch, counting every 5 s here; every 60 s in training).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import torch
from _timing import machine  # bench/ is on sys.path when run as a script
from torch.utils.data import DataLoader, Subset

from dunet.data.dataset import leave_sigterm_to_the_main_process
from dunet.engine.allocator import keep_freed_memory
from dunet.engine.config import load_config
from dunet.engine.hardware import autocast, choose_precision, native_bf16, plan_threads
from dunet.runtime.cpu import usable_cores
from dunet.engine.losses import total_loss
from dunet.engine.trainer import Distributed, build_data
from dunet.models import build_model

REPO = Path(__file__).resolve().parents[1]


def training_step(cfg, precision: str = "fp32"):
    """One training step of a fresh model, as the trainer runs it: step(batch) -> the images it took."""
    torch.manual_seed(0)
    model = build_model(cfg.model).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.optim.lr)
    kinds = cfg.supervision_per_head(cfg.model.heads)
    device = torch.device("cpu")

    def step(item) -> int:
        with autocast(precision, device):
            outputs = model(item["image"].contiguous(memory_format=torch.channels_last))
        loss = total_loss(outputs, item["heatmaps"], item["visible"], kinds)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(item["image"])

    return step


def images_per_s(cfg, train_set, indices, precision: str, threads: int, workers: int, steps: int, warmup: int) -> float:
    torch.set_num_threads(threads)
    step_on = training_step(cfg, precision)
    batch = cfg.optim.batch_size
    loader = DataLoader(Subset(train_set, indices[: (steps + warmup) * batch]), batch_size=batch,
                        num_workers=workers, worker_init_fn=leave_sigterm_to_the_main_process)
    started, seen = None, 0
    for step, item in enumerate(loader):
        if step == warmup:
            started, seen = time.perf_counter(), 0
        seen += step_on(item)
    return seen / (time.perf_counter() - started)


def late_work_images_per_s(cfg, train_set, indices, follow: bool, seconds: float) -> tuple[float, int]:
    """Images/s over `seconds` after a busy loop (nice 10, started as another terminal's program is) starts on
    one core, for a training that started with every core; and its threads at the end."""
    import subprocess
    import sys

    from dunet.engine.hardware import FreeCoreWatch

    threads = usable_cores()
    torch.set_num_threads(threads)
    step_on = training_step(cfg)
    loader = DataLoader(Subset(train_set, indices), batch_size=cfg.optim.batch_size, num_workers=1,
                        worker_init_fn=leave_sigterm_to_the_main_process)
    watch = FreeCoreWatch(threads, every=5.0) if follow else None
    busy, seen, started = None, 0, None
    for step, item in enumerate(itertools.cycle(loader)):
        if step == 2:  # warmed up on a quiet machine: now other work starts
            # Detached as a program started from another terminal is: Linux's autogroups share the CPU between
            # terminals first, so its nice 10 does not make it give way to this one.
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(10),
                                    start_new_session=True)
            started = time.perf_counter()
            if watch is not None:
                watch.due = time.monotonic() + watch.every
        images = step_on(item)
        if started is not None:
            seen += images
            if time.perf_counter() - started > seconds:
                break
        if watch is not None and (changed := watch.poll()) is not None:
            torch.set_num_threads(changed)
    busy.kill()
    busy.wait()
    time.sleep(1.0)  # the busy core cools down before the next row
    return seen / (time.perf_counter() - started), torch.get_num_threads()


def late_work_main(args) -> None:
    keep_freed_memory()
    cfg = load_config(args.config)
    _, _, train_set, groups, _ = build_data(cfg, Distributed())
    indices = [i for group in groups for i in group]
    cores = usable_cores()
    print(f"{cfg.model.arch}({cfg.model.units}) {cfg.model.input_size} px, batch {cfg.optim.batch_size}, fp32, "
          f"{machine()['cpu']}, {cores} cores; a busy loop starts on one core after 2 steps")
    rows = []
    for follow in (False, True):
        speed, threads = late_work_images_per_s(cfg, train_set, indices, follow, args.seconds)
        rows.append({"threads": "kept" if not follow else "follow free cores", "threads_at_end": threads,
                     "images_per_s": round(speed, 2)})
        print(f"  threads {rows[-1]['threads']:<18} {threads} at the end: {speed:.1f} img/s", flush=True)
    result = {"benchmark": "training images/s when other work starts after the run", "config": args.config,
              "machine": machine(), "cores": cores, "seconds": args.seconds, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def face_ms(model: str, backend: str, threads: int, calls: int) -> tuple[float, int]:
    """Median ms per predict call for a 200 px box in a 320x240 image of random pixels (the time does not depend
    on them), and the threads the model ran on."""
    import numpy as np

    import dunet

    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    landmarker = dunet.load(model, backend=backend, threads=threads, detect_faces=False)
    box = (60, 20, 200, 200)
    for _ in range(3):
        landmarker.predict(image, box)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        landmarker.predict(image, box)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2], landmarker.runner.threads


def inference_main(args) -> None:
    from dunet.runtime.cpu import busy_cores

    cores = usable_cores()
    busy = busy_cores(seconds=1.0)
    print(f"{args.inference}, one face per call, {machine()['cpu']}, {cores} usable cores, "
          f"{busy} busy with other work now")
    rows: dict[tuple, tuple[float, int]] = {}
    for _round in range(2):
        for backend, threads in itertools.product(args.backends, [*range(1, cores + 1), 0]):
            ms, used = face_ms(args.inference, backend, threads, args.steps)
            key = (backend, threads)
            rows[key] = min(rows.get(key, (ms, used)), (ms, used))
            print(f"  round {_round + 1}: {backend} threads={threads} ({used} used): {ms:.2f} ms", flush=True)
    print(f"\n{'backend':<10}{'threads':>9}{'ms/face':>9}")
    for (backend, threads), (ms, used) in sorted(rows.items()):
        print(f"{backend:<10}{(f'0 -> {used}' if threads == 0 else str(threads)):>9}{ms:>9.2f}")
    result = {"benchmark": "ms per face by backend and threads", "model": args.inference, "machine": machine(),
              "cores": cores, "busy_cores_at_start": busy, "calls": args.steps,
              "rows": [{"backend": b, "threads": t, "threads_used": used, "ms_per_face": round(ms, 2)}
                       for (b, t), (ms, used) in sorted(rows.items())]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inference", metavar="MODEL", help="time a pretrained model's inference instead of training")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx", "openvino"],
                        help="--inference: the backends to time")
    parser.add_argument("--late-work", action="store_true",
                        help="time a training when other work starts on one core after it did")
    parser.add_argument("--seconds", type=float, default=40.0, help="--late-work: seconds timed per row")
    parser.add_argument("--config", default=str(REPO / "dunet" / "configs" / "demo.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "threads.json"))
    args = parser.parse_args()
    if args.inference:
        return inference_main(args)
    if args.late_work:
        return late_work_main(args)

    keep_freed_memory()
    cfg = load_config(args.config)
    _, _, train_set, groups, _ = build_data(cfg, Distributed())
    indices = [i for group in groups for i in group]
    cores = usable_cores()
    auto = plan_threads()
    combos = sorted({(t, w) for t in range(1, cores + 1) for w in range(0, cores + 1)} | {(auto.threads, auto.workers)})
    device = torch.device("cpu")
    print(f"{cfg.model.arch}({cfg.model.units}) {cfg.model.input_size} px, batch {cfg.optim.batch_size}, "
          f"{machine()['cpu']}, {cores} cores; native bf16: {native_bf16(device)[1]}; "
          f"auto: {choose_precision('auto', device)[0]}, {auto.threads} threads, {auto.workers} workers")
    rows: dict[tuple, float] = {}
    for _round in range(2):
        for precision, (threads, workers) in itertools.product(args.precisions, combos):
            speed = images_per_s(cfg, train_set, indices, precision, threads, workers, args.steps, args.warmup)
            key = (precision, threads, workers)
            rows[key] = max(rows.get(key, 0.0), speed)
            print(f"  round {_round + 1}: {precision} {threads} thread(s) {workers} worker(s): {speed:.1f} img/s", flush=True)

    best = max(rows.values())
    print(f"\n{'precision':<10}{'threads':>8}{'workers':>8}{'img/s':>9}{'of best':>9}")
    for (precision, threads, workers), speed in sorted(rows.items()):
        mark = "  <- auto" if (precision, threads, workers) == (choose_precision("auto", device)[0], auto.threads,
                                                                  auto.workers) else ""
        print(f"{precision:<10}{threads:>8}{workers:>8}{speed:>9.1f}{speed / best:>8.0%}{mark}")
    result = {"benchmark": "training images/s by precision, threads and data workers", "config": args.config,
              "machine": machine(), "cores": cores, "steps": args.steps, "warmup": args.warmup,
              "auto": {"precision": choose_precision("auto", device)[0], "threads": auto.threads, "workers": auto.workers},
              "rows": [{"precision": p, "threads": t, "workers": w, "images_per_s": round(s, 2)}
                       for (p, t, w), s in sorted(rows.items())]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
