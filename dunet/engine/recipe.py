"""The own-data recipe: `dunet train --data FORMAT:PATH --out RUN`, no config file.

It fine-tunes the shipped model closest to the data (faces from the face model; bodies, animals and other
points from the pose model, whose features know limbs and articulated shapes; the heads start fresh for the
data's keypoints), and sizes the run to a time budget: it times a few training steps of the model on this
machine, then picks the input size and the number of epochs that fit. The schedule is written as fractions
of the run, so it stays right whatever number of epochs is chosen.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from dunet import DunetError
from dunet.config import apply_overrides
from dunet.engine.config import TrainConfig, config_to_dict, from_dict
from dunet.engine.hardware import autocast, choose_precision, plan_threads

MIN_FRAMES = 10  # below this no split leaves enough to learn from and to score on
SIZES = (256, 192, 128)  # tried largest first: a small animal in a whole frame needs pixels
MIN_EPOCHS, MAX_EPOCHS = 15, 200
TRAINING_SHARE = 0.85  # of --minutes; the rest goes to validation, checkpoints and data start-up


def starting_model(spec) -> tuple[str, str]:
    """(pretrained name, why) for a landmark spec."""
    if spec.normaliser[0] == "interocular" or spec.name in ("300w", "wflw"):
        return "300w-dunet4", "face landmarks: start from the face model"
    if spec.name in ("lsp", "mpii", "coco"):
        return "lsp-dunet4", "body joints: start from the pose model"
    return "lsp-dunet4", "your own points (animal, object): start from the pose model, the most general features shipped"


def check_own_data(source) -> None:
    """Enough labelled frames, and every keypoint labelled somewhere: a clear line otherwise."""
    frames = len(source)
    if frames < MIN_FRAMES:
        raise DunetError(f"{source.name}: {frames} labelled frame(s); a usable model needs at least {MIN_FRAMES} "
                         "(50-200 is typical), label more frames first")
    labelled = sum(s.visible > 0 for s in source.samples)
    never = [name for name, count in zip(source.spec.keypoints, labelled) if count == 0]
    if never:
        raise DunetError(f"{source.name}: keypoint(s) {', '.join(never)} are labelled in none of the {frames} frames; "
                         "label them in some frames, or remove them from the project")


def step_seconds(cfg: TrainConfig, input_size: int, batch: int, steps: int = 3) -> float:
    """Median seconds of a training step of the recipe's model at `input_size`, on this machine."""
    from dunet.engine.losses import total_loss
    from dunet.models import build_model

    model_cfg = from_dict(type(cfg.model), {**config_to_dict(cfg)["model"], "input_size": input_size})
    model = build_model(model_cfg).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 3, input_size, input_size).contiguous(memory_format=torch.channels_last)
    size = model_cfg.heatmap_size
    targets = torch.zeros(batch, model_cfg.landmarks, size, size)
    visible = torch.ones(batch, model_cfg.landmarks)
    kinds = cfg.supervision_per_head(model_cfg.heads)
    precision = choose_precision(cfg.precision, torch.device("cpu"))[0]
    times = []
    for _ in range(steps + 1):  # the first step builds the kernels
        start = time.perf_counter()
        with autocast(precision, torch.device("cpu")):
            outputs = model(images)
        loss = total_loss(outputs, targets, visible, kinds, cfg.regression_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def previous_run(run: str, spec) -> dict:
    """The model config of the run `--init RUN` refines (its weights fit only the same network); one line when
    its points are not the data's."""
    from dunet.checkpoint import load_checkpoint

    card = load_checkpoint(run).card
    if tuple(card.spec.keypoints) != tuple(spec.keypoints):
        raise DunetError(f"--init {run}: the run predicts {list(card.spec.keypoints)}, the data has "
                         f"{list(spec.keypoints)}; they must be the same, in the same order")
    return dataclasses.asdict(card.network)


def own_data_config(data: str | list[str], val: str, source, minutes: float, overrides: list[str] = (),
                    timer=step_seconds, init_run: str = "") -> tuple[TrainConfig, list[str]]:
    """The recipe for `source` (opened from `data`, one FORMAT:PATH or several merged) in about `minutes` of
    training on this machine, and the lines that say what was chosen and why. `init_run`: refine that run
    (its weights, heads included, and its input size) instead of starting from a shipped model.
    `overrides` (--set) apply last and win."""
    check_own_data(source)
    init, why = starting_model(source.spec)
    model = {"arch": "dunet", "units": 4, "order": 1, "landmarks": source.spec.num_keypoints, "memory_efficient": False}
    sizes = SIZES
    if init_run:
        model = previous_run(init_run, source.spec)
        sizes, init, why = (model["input_size"],), init_run, "refine the earlier run: the same network and input size"
    data = [data] if isinstance(data, str) else list(data)
    held_out = 0.0 if val else 0.2
    # The trainer splits the held-out frames off the first source only, so adding label files keeps them.
    first = sum(s.meta.get("source", 0) == 0 for s in source.samples)
    frames = len(source) - (0 if val else max(1, round(first * held_out)))
    base = {
        "model": model,
        "data": {"train": data, "val": val, "val_fraction": held_out, "split_seed": 0,
                 "rotation": 30.0, "scale_range": [0.75, 1.25]},
        "optim": {"optimizer": "rmsprop", "lr": 5e-4, "batch_size": 8, "milestones": [0.7, 0.9],
                  "gammas": [0.2, 0.5]},
        "init": init,
        # No flip averaging at validation: `dunet eval` and `dunet predict` do not flip unless asked, so the
        # per-epoch figures in the log measure what they run.
        "flip_test": False,
    }
    cfg = from_dict(TrainConfig, apply_overrides(base, list(overrides)))
    plan = plan_threads(cfg.threads, cfg.data.workers)
    torch.set_num_threads(plan.threads)
    batch = cfg.optim.batch_size
    budget = minutes * 60 * TRAINING_SHARE
    epoch_seconds = {}  # by input size, measured here
    for size in sizes:
        epoch_seconds[size] = timer(cfg, size, batch) * -(-frames // batch)
        if budget // epoch_seconds[size] >= MIN_EPOCHS:
            break
    size = next(reversed(epoch_seconds))  # the first that fits MIN_EPOCHS, else the smallest
    epochs = max(1, min(int(budget // epoch_seconds[size]), MAX_EPOCHS))
    final = apply_overrides(base, [f"model.input_size={size}", f"optim.epochs={epochs}",
                                   f"eval_every={max(1, epochs // 5)}", *overrides])
    cfg = from_dict(TrainConfig, final)
    lines = [
        f"own-data recipe for {' + '.join(data)}: {len(source)} frames, {source.spec.num_keypoints} keypoints "
        f"({', '.join(source.spec.keypoints)})",
        f"  start: {cfg.init} ({why})" + ("" if init_run else "; heads start fresh") if cfg.init else "  start: from scratch (init is empty)",
        f"  held out: {'all of ' + val if val else '20 % of the frames (split_seed 0)'}"
        + (f" of the first label file, {data[0]}" if len(data) > 1 and not val else ""),
        f"  model: DU-Net({cfg.model.units}) at {cfg.model.input_size} px; {cfg.optim.epochs} epochs of "
        f"{frames} frames, lr {cfg.optim.lr:g}"
        + "".join(f" x{g:g} from epoch {e + 1}" for e, g in zip(cfg.optim.milestone_epochs(), cfg.optim.gammas)),
        f"  expected time: {cfg.optim.epochs * epoch_seconds[size] / 60:.1f} min of training "
        f"({epoch_seconds[size]:.0f} s per epoch measured here; budget {minutes:g} min, --minutes changes it)",
        # What the budget cost, unless --set chose the input size or the epochs itself.
        *(budget_notes(epoch_seconds, sizes[0], size, minutes)
          if (cfg.model.input_size, cfg.optim.epochs) == (size, epochs) else []),
    ]
    return cfg, lines


def budget_notes(epoch_seconds: dict[int, float], wanted: int, chosen: int, minutes: float) -> list[str]:
    """What the time budget cost: a smaller input than the largest the recipe considers for the data (fewer
    pixels for small parts of a whole frame), or fewer than MIN_EPOCHS epochs; and the --minutes that buys it."""
    def minutes_for(size: int) -> int:
        return math.ceil(MIN_EPOCHS * epoch_seconds[size] / TRAINING_SHARE / 60)

    notes = []
    if chosen != wanted:
        fit = int(minutes * 60 * TRAINING_SHARE // epoch_seconds[wanted])
        notes.append(f"  note: this machine's speed forces {chosen} px instead of {wanted} px: at {wanted} px "
                     f"{fit} epoch(s) fit in {minutes:g} min, of the {MIN_EPOCHS} the recipe asks for; "
                     f"--minutes {minutes_for(wanted)} would train at {wanted} px")
    fit = int(minutes * 60 * TRAINING_SHARE // epoch_seconds[chosen])
    if fit < MIN_EPOCHS:
        notes.append(f"  note: only {fit} epoch(s) fit in {minutes:g} min at {chosen} px, fewer than the "
                     f"{MIN_EPOCHS} the recipe asks for; --minutes {minutes_for(chosen)} gives {MIN_EPOCHS}")
    return notes
