"""Train a recipe from a data pack within a time budget, on one GPU (or, at toy size, the CPU): the paper's face
model in one lent GPU window (docs/gpu_window.md).

    python tools/gpu_train.py configs/300w_dunet8_gpu.yaml --pack packs/300w.npz --out runs/gpu --minutes 6
    python tools/gpu_train.py configs/300w_dunet8_gpu.yaml --pack packs/300w.npz --check   # no training

Read top to bottom: check the pack against the recipe (before any device work), upload the training crops once as
uint8, time a few steps, size the run to the budget and print that plan, train, score the held-out split with the
project's evaluator, write a run directory. Augmentation (the recipe's scale, rotation, flip, colour and occlusion)
and the heatmap targets are made on the device in batches; a GPU never waits for its CPU.

The run directory is the project's: config.yaml, log.csv, curves.png, last/ (the model weights, float16 so that the
file stays under the 16 MiB a GPU machine returns; no training state, so not resumable) and result.json (the held-out
figures of those very weights). `dunet eval RUN` and tools/ship_pretrained.py RUN --checkpoint last read it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, on a machine where dunet is not installed (a GPU machine)
    sys.path.insert(0, str(REPO))

from dunet import DunetError  # noqa: E402
from dunet.data.transforms import Augmentation  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pack_data import open_pack  # noqa: E402

# The H100 plan before anything is measured. A training step costs about 3x the forward multiply-accumulates
# (forward, input and weight gradients: bench/train.py), 2 FLOPs each. A DU-Net's narrow convolutions (32 new
# channels per layer), BN-ReLU passes and concatenations are memory-bound, far below a GPU's matrix peak: assumed
# 2.5 % of the H100's 989 dense bf16 TFLOP/s (ResNet-50 reaches about 10 %). The measured rate replaces it.
H100_BF16_TFLOPS = 989.0
ASSUMED_SHARE = 0.025
WARMUP_STEPS, TIMED_STEPS = 2, 5  # before the plan: kernel selection, then the timed steps
SAVE_SECONDS = 5.0  # kept for writing the run at the end


# ---------------------------------------------------------------------------------------------- augmentation
def draw(batch: int, aug: Augmentation, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One batch of augmentation parameters, drawn as Augmentation.draw draws one sample's."""
    device = generator.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, *shape, generator=generator, device=device)

    params = {"scale": uniform(*aug.scale_range), "rotation": uniform(-aug.rotation, aug.rotation),
              "flip": uniform(0, 1) < (0.5 if aug.flip else 0.0),
              "gain": uniform(1 - aug.color_jitter, 1 + aug.color_jitter, 3),
              "occluded": uniform(0, 1) < aug.occlusion, "occluder_size": uniform(0.1, 0.4, 2)}
    params["occluder_at"] = uniform(0, 1, 2) * (1 - params["occluder_size"])
    params["occluder_color"] = uniform(0, 1, 3)
    return params


def augment(crops: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor, params: dict, size: int,
            context: float, flip_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training inputs as dunet/data/dataset.py makes them, for a batch at once: (B, 3, P, P) uint8 crops cut at
    `context` x the pipeline's crop, (B, K, 2) keypoints in crop pixels -> (B, 3, size, size) float images in
    [0, 1], keypoints in input pixels, visibility (left and right swapped where mirrored)."""
    scale, angle, flip = params["scale"], torch.deg2rad(params["rotation"]), params["flip"]
    mirror = 1.0 - 2.0 * flip.float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output -> stored crop in grid_sample's coordinates (-1..1 across the pixel edges, align_corners=False, the
    # pixel-centre convention of crop_matrix): mirror, turn back by crop_matrix's rotation, zoom out by scale.
    zoom = scale / context
    theta = torch.stack([torch.stack([zoom * cos * mirror, -zoom * sin, torch.zeros_like(zoom)], -1),
                         torch.stack([zoom * sin * mirror, zoom * cos, torch.zeros_like(zoom)], -1)], 1)
    grid = F.affine_grid(theta, [len(crops), 3, size, size], align_corners=False)
    images = F.grid_sample(crops.float() / 255.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = (images * params["gain"][:, :, None, None]).clamp(0.0, 1.0)
    # Occluders: rectangles in crop fractions, as apply_occluder paints them.
    pixels = torch.arange(size, device=images.device)
    low = torch.round(params["occluder_at"] * size)
    high = torch.round((params["occluder_at"] + params["occluder_size"]) * size)
    inside_x = (pixels >= low[:, 0, None]) & (pixels < high[:, 0, None])
    inside_y = (pixels >= low[:, 1, None]) & (pixels < high[:, 1, None])
    painted = params["occluded"][:, None, None] & inside_y[:, :, None] & inside_x[:, None, :]
    images = torch.where(painted[:, None], params["occluder_color"][:, :, None, None], images)
    # Keypoints go the other way: stored-crop pixels -> -1..1 -> the inverse of theta -> input pixels.
    stored = crops.shape[-1]
    u = (2.0 * keypoints + 1.0) / stored - 1.0
    inverse = torch.stack([torch.stack([mirror * cos, mirror * sin], -1), torch.stack([-sin, cos], -1)], 1)
    v = torch.einsum("bij,bkj->bki", inverse, u) / zoom[:, None, None]
    points = ((v + 1.0) * size - 1.0) / 2.0
    swap = flip[:, None]
    points = torch.where(swap[..., None], points[:, flip_index], points)
    visible = torch.where(swap, visible[:, flip_index], visible)
    return images, points, visible


# ---------------------------------------------------------------------------------------------- the plan
def epoch_seconds(steps_per_epoch: int, step_seconds: float, eval_seconds: float, eval_every: int) -> float:
    return steps_per_epoch * step_seconds + eval_seconds / eval_every


def fit_epochs(seconds_left: float, steps_per_epoch: int, step_seconds: float, eval_seconds: float,
               eval_every: int, most: int) -> int:
    """Epochs that fit in `seconds_left` with the final evaluation and the save kept aside; at most `most`."""
    spare = seconds_left - eval_seconds - SAVE_SECONDS
    per_epoch = epoch_seconds(steps_per_epoch, step_seconds, eval_seconds, eval_every)
    return max(0, min(most, math.floor(spare / per_epoch)))


def assumed_h100(cfg, samples: int, minutes: float) -> str:
    """The plan on an H100 before anything is measured, for the budget of `minutes`."""
    from dunet.models.profile import count_macs

    macs = count_macs(cfg.model)
    images_per_s = ASSUMED_SHARE * H100_BF16_TFLOPS * 1e12 / (3 * 2 * macs)
    epoch = samples / images_per_s
    epochs = min(cfg.optim.epochs, math.floor(0.9 * 60 * minutes / epoch))  # 10 % for start, timing, evaluation
    return (f"assumed on an H100: {macs / 1e9:.2f} G MACs per image forward, x3 per training step = "
            f"{6 * macs / 1e9:.0f} GFLOP; at {ASSUMED_SHARE:.1%} of {H100_BF16_TFLOPS:.0f} bf16 TFLOP/s: "
            f"{images_per_s:.0f} images/s, {epoch / 60:.3f} min per epoch of {samples}: about {epochs} epochs in "
            f"{minutes:g} min")


# ---------------------------------------------------------------------------------------------- training
def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="the training recipe (YAML), e.g. configs/300w_dunet8_gpu.yaml")
    parser.add_argument("--pack", required=True, type=Path, help="its data pack (tools/pack_data.py)")
    parser.add_argument("--out", type=Path, help="the run directory to write")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the whole script")
    parser.add_argument("--epochs", type=int, default=0, help="train this many epochs; 0 = what fits the budget, "
                        "at most the recipe's optim.epochs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (its compile time counts "
                        "against the budget)")
    parser.add_argument("--check", action="store_true", help="check the pack against the recipe, print the assumed "
                        "plan, and stop")
    args = parser.parse_args(argv)
    try:
        return run(args, started)
    except DunetError as err:
        print(f"tools/gpu_train.py: error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, started: float) -> int:
    from dunet.checkpoint import save_checkpoint
    from dunet.data.spec import spec_to_dict
    from dunet.engine.allocator import keep_freed_memory
    from dunet.engine.config import config_to_dict, load_config
    from dunet.engine.evaluate import main_metric, predict_source, score
    from dunet.engine.hardware import autocast, choose_precision, plan_threads, resolve_device
    from dunet.engine.inference import torch_model
    from dunet.engine.losses import total_loss
    from dunet.engine.trainer import plot_curves, warmed_up_ema, write_log
    from dunet.files import atomic_write_file
    from dunet.metrics import format_value
    from dunet.models import build_model

    cfg = load_config(args.recipe, args.overrides)
    pack = open_pack(args.pack, cfg)  # refuses a missing, damaged or other-split pack before any device work
    if cfg.teacher or cfg.data.train_weights:
        raise DunetError(f"{args.recipe}: teacher and data.train_weights are `dunet train` options; "
                         "tools/gpu_train.py trains without them")
    samples = len(pack.meta["train_ids"])
    print(f"{args.pack}: {samples} training crops, {len(pack.meta['held_out'])} held out "
          f"(split_seed {cfg.data.split_seed}); {cfg.model.arch}({cfg.model.units}) at {cfg.model.input_size} px")
    print(assumed_h100(cfg, samples, args.minutes))
    if args.check:
        return 0
    if args.out is None:
        raise DunetError("--out: give the run directory to write")
    if args.minutes <= 0 or args.epochs < 0:
        raise DunetError(f"--minutes {args.minutes} must be > 0 and --epochs {args.epochs} >= 0")
    if (args.out / "last").exists():
        raise DunetError(f"{args.out} already holds a run; choose another --out")
    deadline = started + 60.0 * args.minutes

    device = resolve_device(cfg.device)
    precision, why = choose_precision(cfg.precision, device)
    torch.set_num_threads(plan_threads(cfg.threads, 0, 1, device.type).threads)
    keep_freed_memory()
    torch.backends.cudnn.benchmark = True  # every batch has the same shape: pick the fastest kernels once
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format

    # The training set, decoded once and uploaded as uint8 (300-W at 320 px: 0.33 GB).
    crops, keypoints, visible = pack.train_crops()
    crops = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().to(device)
    keypoints, visible = torch.from_numpy(keypoints).to(device), torch.from_numpy(visible).to(device)
    held_out = pack.held_out()
    spec = held_out.spec
    flip_index = torch.as_tensor(spec.flip_index(), device=device)
    aug = cfg.data.augmentation if spec.can_flip else dataclasses.replace(cfg.data.augmentation, flip=False)
    codec, context, size = cfg.codec, pack.meta["crop"]["context"], cfg.model.input_size
    kinds = cfg.supervision_per_head(cfg.model.heads)
    batch = min(cfg.optim.batch_size, samples)
    steps_per_epoch = samples // batch  # the last partial batch is dropped, as `dunet train` does

    model = build_model(cfg.model).to(device).to(memory_format=fmt)
    if cfg.init:
        from dunet.checkpoint import init_weights
        from dunet.runtime.pretrained import path_or_pretrained

        init_weights(model, path_or_pretrained(cfg.init))
    net = torch.compile(model) if args.compile else model

    def make_optimizer() -> torch.optim.Optimizer:
        kind = torch.optim.RMSprop if cfg.optim.optimizer == "rmsprop" else torch.optim.Adam
        return kind(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)

    def step(order: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        params = draw(len(order), aug, generator)
        images, points, seen = augment(crops[order], keypoints[order], visible[order], params, size, context,
                                       flip_index)
        heatmaps, seen = codec.encode(points, seen)
        with autocast(precision, device):
            outputs = net(images.contiguous(memory_format=fmt))
        loss = total_loss(outputs, heatmaps, seen, kinds, cfg.regression_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def evaluate(weights: torch.nn.Module) -> dict:
        """The held-out metrics of `weights` (any float type), in fp32, by the evaluator `dunet eval` uses."""
        runner = torch_model(copy.deepcopy(weights).float(), cfg, spec, precision="fp32", device=device)
        pred, idx = predict_source(runner.predict_crops, held_out, size, batch_size=batch)
        return score(held_out, pred, idx)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # Time the step on the real data, then put the initial weights back.
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    scratch = make_optimizer()
    for _ in range(WARMUP_STEPS):
        step(torch.randperm(samples, generator=generator, device=device)[:batch], scratch)
    synchronize()
    timer = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step(torch.randperm(samples, generator=generator, device=device)[:batch], scratch)
    synchronize()
    step_seconds = (time.perf_counter() - timer) / TIMED_STEPS
    timer = time.perf_counter()
    evaluate(model)
    eval_seconds = time.perf_counter() - timer
    model.load_state_dict(initial)
    del scratch

    seconds_left = deadline - time.monotonic()
    fitted = fit_epochs(seconds_left, steps_per_epoch, step_seconds, eval_seconds, cfg.eval_every, cfg.optim.epochs)
    epochs = args.epochs or fitted
    if epochs < 1:
        raise DunetError(f"--minutes {args.minutes}: {seconds_left:.0f} s are left, too few for one epoch "
                         f"({steps_per_epoch} steps of {step_seconds:.2f} s)")
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, epochs=epochs))  # the schedule's length
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}); precision {precision} ({why}); batch {batch}; "
          f"compile {'on' if args.compile else 'off'}")
    per_epoch = epoch_seconds(steps_per_epoch, step_seconds, eval_seconds, cfg.eval_every)
    print(f"plan: {epochs} epochs x {steps_per_epoch} steps = {epochs * steps_per_epoch} steps; measured "
          f"{step_seconds:.3f} s per step ({batch / step_seconds:.1f} images/s), {per_epoch / 60:.2f} min per epoch; "
          f"{seconds_left / 60:.1f} of {args.minutes:g} min left" + ("" if args.epochs else f", {fitted} epochs fit"),
          flush=True)

    optimizer = make_optimizer()
    ema = None
    if cfg.optim.ema:
        from torch.optim.swa_utils import AveragedModel

        ema = AveragedModel(model, multi_avg_fn=warmed_up_ema(cfg.optim.ema), use_buffers=True)
    weights = ema.module if ema is not None else model  # what is evaluated and saved
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_file(args.out / "config.yaml", yaml.safe_dump({**config_to_dict(cfg), "spec": spec_to_dict(spec)},
                                                          sort_keys=False))
    stop_at = deadline - eval_seconds - SAVE_SECONDS
    steps, stopped = 0, False
    for epoch in range(epochs):
        lr = cfg.optim.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        timer = time.perf_counter()
        order = torch.randperm(samples, generator=generator, device=device)
        total = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            total += step(order[i * batch:(i + 1) * batch], optimizer)
            if ema is not None:
                ema.update_parameters(model)
            steps += 1
            if time.monotonic() > stop_at:
                stopped = True
                break
        train_loss = total.item() / (i + 1)  # the one host sync of an epoch
        if not math.isfinite(train_loss):
            raise DunetError(f"loss is {train_loss} in epoch {epoch + 1}: stopping (try a lower optim.lr)")
        seconds = time.perf_counter() - timer
        last = epoch + 1 == epochs or stopped
        metrics = {}
        if last:
            # Saved as float16 (a GPU machine returns files of at most 16 MiB; DU-Net(8) in fp32 is 31 MiB), and
            # scored as saved.
            final = copy.deepcopy(weights).half()
            metrics = evaluate(final)
        elif (epoch + 1) % cfg.eval_every == 0:
            metrics = evaluate(weights)
        key = main_metric(metrics)[0] if metrics else ""
        write_log(args.out / "log.csv", {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                                         "images_per_s": round((i + 1) * batch / seconds, 2),
                                         "seconds": round(seconds, 1), "metric": key,
                                         "value": metrics.get(key, "")})
        shown = f", {key} {format_value(key, metrics[key])}" if metrics else ""
        print(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.6f}, {(i + 1) * batch / seconds:.1f} img/s{shown}",
              flush=True)
        if last:
            break
    if stopped:
        print(f"stopped in epoch {epoch + 1} after {steps} steps: the {args.minutes:g} min budget is spent")

    save_checkpoint(args.out / "last", final, cfg.model_card(spec), config=cfg, metrics=metrics)
    plot_curves(args.out / "log.csv", args.out / "curves.png")
    key = main_metric(metrics)[0]
    wall = (time.monotonic() - started) / 60
    result = {key: metrics[key], "held_out": len(held_out), "epochs": epoch + 1, "steps": steps, "batch": batch,
              "stopped_by_budget": stopped, "train_images_per_s": round(batch / step_seconds, 1),
              "minutes": round(wall, 2), "device": name, "precision": precision, "compile": args.compile,
              "recipe": args.recipe, "overrides": args.overrides, "pack": str(args.pack), "metrics": metrics}
    atomic_write_file(args.out / "result.json", json.dumps(result, indent=1, default=float) + "\n")
    print(f"held out: {key} {format_value(key, metrics[key])} on {len(held_out)} samples; {steps} steps in "
          f"{wall:.2f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
