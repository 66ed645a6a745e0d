"""The training loop, top to bottom: data, model, optimizer, epochs, validation, checkpoints.

A run directory holds `config.yaml` (resolved), `log.csv` (one row per epoch), `curves.png`,
`last/` and `best/` checkpoints (atomic), and `.lock`, held while a process trains there.
`resume=True` continues from `last/` exactly: weights, optimizer, RNG and epoch are restored, and shuffling and augmentation depend only on
(seed, epoch, index), so 2 epochs straight equal 1 + resume + 1. `last/` only ever holds a completed, validated
epoch: SIGTERM or Ctrl-C mid-epoch (or mid-validation) leaves it as it is and exits, and a resume redoes
that epoch, bit for bit as an uninterrupted run would.

Distributed: started with `torchrun --nproc-per-node N -m dunet train ...`, each process trains on
its shard of every epoch under DistributedDataParallel (gloo on CPU, nccl on GPUs); rank 0 validates,
logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.optim.swa_utils import AveragedModel

from dunet import DunetError
from dunet.files import atomic_write_file
from dunet.checkpoint import (
    init_weights,
    load_checkpoint,
    load_weights,
    restore_optimizer,
    restore_rng,
    save_checkpoint,
)
from dunet.data.dataset import EpochSampler, LandmarkDataset, build_loader
from dunet.data.spec import spec_to_dict
from dunet.engine.allocator import keep_freed_memory
from dunet.engine.config import TrainConfig, config_from_dict, config_to_dict
from dunet.engine.evaluate import main_metric, predict_source, score
from dunet.engine.hardware import FreeCoreWatch, autocast, choose_precision, plan_threads, resolve_device
from dunet.runtime.cpu import usable_cores
from dunet.engine.inference import load_torch_model, torch_model
from dunet.engine.losses import total_loss
from dunet.engine.progress import RunProgress
from dunet.metrics import format_value
from dunet.models import build_model


def warmed_up_ema(decay: float):
    """The update of an exponential moving average whose decay ramps up as (1 + n) / (10 + n) after n updates
    (TensorFlow's num_updates rule), capped at `decay`. Without the ramp the large first steps of a fresh
    optimizer dominate the average for hundreds of steps (measured on LSP: 24.7 % PCK at epoch 2, raw 70.9 %)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # counters such as BN's num_batches_tracked: follow the model
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))
    return update


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) split of range(n)."""
    if n < 2 or fraction <= 0:
        return list(range(n)), []
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def evenly_spaced(indices: list[int], count: int) -> list[int]:
    """Up to `count` of `indices`, spread evenly over them. A data set's files are often sorted by where they came
    from (300-W: every AFW face before the first HELEN face), so its first samples can all be of one kind."""
    n = len(indices)
    return list(indices) if n <= count else [indices[i * n // count] for i in range(count)]


def build_data(cfg: TrainConfig, ddp: Distributed):
    """(train source, val source, train dataset, training indices per source, validation indices)."""
    from dunet.data.readers import combine_sources, open_source

    sources = [open_source(name, skip_bad=cfg.data.skip_bad) for name in cfg.data.train]
    train_source = combine_sources(sources)
    offsets = np.cumsum([0] + [len(s) for s in sources]).tolist()
    groups = [list(range(offsets[i], offsets[i + 1])) for i in range(len(sources))]
    if cfg.data.val:
        val_source = open_source(cfg.data.val, skip_bad=cfg.data.skip_bad)
        if val_source.spec.keypoints != train_source.spec.keypoints:
            raise DunetError(f"data.val {cfg.data.val} has keypoints {list(val_source.spec.keypoints)} but "
                             f"data.train {sources[0].name} has {list(train_source.spec.keypoints)}; "
                             "validate on data with the same keypoints, in the same order")
        val_idx = list(range(len(val_source)))
    else:  # the held-out part comes off the first source, so adding sources keeps the same validation set
        val_source = train_source
        groups[0], val_idx = split_indices(len(sources[0]), cfg.data.val_fraction, cfg.data.split_seed)
    if cfg.max_val_samples:
        val_idx = val_idx[: cfg.max_val_samples]
    if cfg.data.normaliser:
        from dunet.data.spec import with_normaliser

        train_source.spec = with_normaliser(train_source.spec, cfg.data.normaliser)
        val_source.spec = with_normaliser(val_source.spec, cfg.data.normaliser)
    spec = train_source.spec
    if cfg.model.landmarks != spec.num_keypoints:
        raise DunetError(f"config key 'model.landmarks' is {cfg.model.landmarks} but {sources[0].name} has "
                         f"{spec.num_keypoints} keypoints per sample; set model.landmarks={spec.num_keypoints}")
    train_set = LandmarkDataset(train_source, cfg.model.input_size, augment=cfg.data.augmentation, seed=cfg.seed,
                                codec=cfg.codec)
    return train_source, val_source, train_set, groups, val_idx


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, *, resume: bool = False, log=print):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.device = resolve_device(cfg.device)  # before any data is read: a missing GPU fails at once
        self.ddp = setup_distributed()
        if self.device.type == "cuda" and self.ddp.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        self.precision, precision_reason = choose_precision(cfg.precision, self.device)
        self.plan = plan_threads(cfg.threads, cfg.data.workers, self.ddp.world, self.device.type)
        torch.set_num_threads(self.plan.threads)
        auto_threads = cfg.threads == 0 and self.ddp.world == 1 and self.device.type == "cpu"
        self.core_watch = FreeCoreWatch(self.plan.threads) if auto_threads else None
        self.run_progress = RunProgress(log=log, enabled=self.ddp.main)  # one bar over every epoch
        if self.ddp.main:
            self.log(f"device {self.device}; precision {self.precision} ({precision_reason}); {self.plan.reason}")
            late = [m for m in cfg.optim.milestone_epochs() if m >= cfg.optim.epochs]
            if late:
                self.log(f"warning: learning-rate milestone(s) {late} are not before the last epoch "
                         f"({cfg.optim.epochs}), so they never fire; write milestones as fractions of the run "
                         "(e.g. [0.6, 0.8]) to keep them when changing optim.epochs")
        keep_freed_memory()
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)

        self.train_source, self.val_source, self.train_set, self.train_groups, self.val_idx = build_data(cfg, self.ddp)
        self.spec = self.train_source.spec
        self.model = build_model(cfg.model).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.kinds = cfg.supervision_per_head(cfg.model.heads)
        params = self.model.parameters()
        if cfg.optim.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.epoch, self.step = 0, 0
        self.best: float | None = None
        # The average copies the model at its first update, after the first step.
        self.ema = None
        if cfg.optim.ema:
            self.ema = AveragedModel(self.model, multi_avg_fn=warmed_up_ema(cfg.optim.ema), use_buffers=True)
        if resume:
            self._resume()
        elif cfg.init:
            self._init_from(cfg.init)
        self.teacher = self._load_teacher(cfg.teacher) if cfg.teacher else None
        self.net = self.model
        if self.ddp.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ------------------------------------------------------------------ state
    def _config_dict(self) -> dict:
        return {**config_to_dict(self.cfg), "spec": spec_to_dict(self.spec)}

    def _resume(self) -> None:
        last = self.out / "last"
        ckpt = load_checkpoint(last)  # also recovers a save cut off between its two renames
        state = ckpt.train_state or {}
        if self.ema is not None and "raw_weights" not in state:
            raise DunetError(f"{last}: this run trained without optim.ema, so it cannot resume with it")
        if self.ema is None and "raw_weights" in state:
            raise DunetError(f"{last}: this run trained with optim.ema={state['ema_decay']}; resume with it")
        if self.ema is None:
            load_weights(self.model, ckpt)
        else:  # a checkpoint's model weights are the average; training goes on from the raw ones
            load_weights(self.ema.module, ckpt)
            self.ema.n_averaged.fill_(int(state["ema_count"]))
            self.model.load_state_dict(state["raw_weights"])
        restore_optimizer(self.optimizer, ckpt)
        self.epoch, self.step, self.best = int(state["epoch"]), int(state["step"]), state.get("best")
        if "rng" in state:
            restore_rng(state["rng"])
        self.log(f"resumed from {last} at epoch {self.epoch}")

    def _init_from(self, source: str) -> None:
        from dunet.runtime.pretrained import path_or_pretrained

        path = path_or_pretrained(source)
        copied, kept = init_weights(self.model, path)
        fresh = sorted({name.split(".")[0] for name in kept if not name.endswith("num_batches_tracked")})
        self.log(f"init: {len(copied)} tensors from {path}" + (f"; fresh: {', '.join(fresh)}" if fresh else ""))

    def _load_teacher(self, source: str):
        """The distillation teacher: frozen, in eval mode, giving its final heatmaps in float. They must be the
        student's heatmaps: same landmarks, input size and heatmap sigma."""
        teacher = load_torch_model(source, precision=self.precision, device=self.device)
        given, model_cfg = teacher.card, self.cfg.model
        for what, theirs, ours in (("landmarks", given.network.landmarks, model_cfg.landmarks),
                                   ("input_size", given.network.input_size, model_cfg.input_size),
                                   ("heatmap sigma", given.codec.sigma, self.cfg.codec.sigma)):
            if theirs != ours:
                raise DunetError(f"teacher {source}: its {what} is {theirs} but this model's is {ours}; a teacher "
                                 "must produce the same heatmaps as the model it teaches")
        if self.ddp.main:
            self.log(f"teacher: {teacher.source} ({given.network.arch}({given.network.units}), quant {given.network.quant}), "
                     f"{self.cfg.teacher_weight:g} of every target")
        return teacher.network.tensors

    def _save(self, name: str, metrics: dict | None = None) -> None:
        if not self.ddp.main:
            return
        state = {"epoch": self.epoch, "step": self.step, "best": self.best}
        weights = self.model
        if self.ema is not None:
            weights = self.ema.module
            state.update(raw_weights=self.model.state_dict(), ema_count=int(self.ema.n_averaged),
                         ema_decay=self.cfg.optim.ema)
        save_checkpoint(self.out / name, weights, self.cfg.model_card(self.spec), config=self.cfg,
                        optimizer=self.optimizer, train_state=state, metrics=metrics)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        cfg = self.cfg
        if self.ddp.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_file(self.out / "config.yaml", yaml.safe_dump(self._config_dict(), sort_keys=False))
            self.log(f"training {cfg.model.arch}({cfg.model.units}) on {' + '.join(cfg.data.train)}: "
                     f"{sum(map(len, self.train_groups))} train / {len(self.val_idx)} val samples, "
                     f"{self.ddp.world} process(es) x {torch.get_num_threads()} threads -> {self.out}")
            trim_log(self.out / "log.csv", self.epoch)  # rows of an epoch that `last` does not hold
        metrics: dict = {}
        saved = self.epoch if self.epoch else None  # the epoch `last` holds
        interrupted = False
        # SIGTERM stops the run as Ctrl-C does; a SIGINT ignored from the start (a job run with `&`) stays ignored.
        stop = StopRequest()
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM,) + (() if ignored else (signal.SIGINT,))}
        log, self.log = self.log, self.run_progress.write  # epoch lines go above the run's bar
        try:
            while self.epoch < cfg.optim.epochs:
                started = time.perf_counter()
                train_loss, images = self._train_epoch(stop)
                seconds = time.perf_counter() - started
                self.epoch += 1
                last_epoch = self.epoch == cfg.optim.epochs
                metrics = {}
                if self.val_idx and (self.epoch % cfg.eval_every == 0 or last_epoch):
                    metrics = self.validate()
                with signals_deferred():  # best/, log.csv and last/ of an epoch are written all, or none
                    self._end_epoch(train_loss, images / seconds, seconds, metrics)
                    saved = self.epoch  # inside: a signal held during the save is raised as the block ends
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.run_progress.close()
            self.log = log
        if interrupted:
            # `last` keeps the last completed (and validated) epoch: saving mid-epoch weights would make
            # --resume replay the epoch on top of them.
            if saved is None:
                self.log("interrupted in epoch 1: no epoch completed, nothing saved; train again to start over")
            else:
                self.log(f"interrupted: saved {self.out / 'last'} holds epoch {saved}, the last completed one; "
                         f"--resume continues with epoch {saved + 1}")
            raise KeyboardInterrupt
        return self._run_metrics(metrics)

    def _run_metrics(self, last: dict) -> dict:
        """PyTorch's held-out metrics of the model the run directory resolves to (best/, else last/), not the
        last epoch's when an earlier epoch scored better. `dunet train` prints instead what `dunet eval RUN
        --split val` measures with its default backend (dunet/commands/train.py)."""
        best = self.out / "best" / "card.json"
        if not self.ddp.main or not best.is_file():
            return last
        try:
            return json.loads(best.read_text(encoding="utf-8")).get("provenance", {}).get("metrics") or last
        except (OSError, ValueError):
            return last

    def _train_epoch(self, stop: StopRequest) -> tuple[float, int]:
        cfg = self.cfg
        lr = cfg.optim.lr_at(self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.train_set.set_epoch(self.epoch)  # this epoch's augmentation and order
        sampler = EpochSampler(self.train_set, self.train_groups, cfg.data.train_weights,
                               rank=self.ddp.rank, world=self.ddp.world)
        batch = max(1, cfg.optim.batch_size // self.ddp.world)
        loader = build_loader(self.train_set, batch, self.plan.workers, sampler, drop_last=len(sampler) >= batch,
                              pin_memory=self.device.type == "cuda")
        if not self.run_progress.total:  # every epoch has as many batches: the run's images are known now
            self.run_progress.start(len(loader) * batch * (cfg.optim.epochs - self.epoch))
        batches = self.run_progress.batches(loader, f"epoch {self.epoch + 1}/{cfg.optim.epochs}")
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.net.train()
        total, seen = 0.0, 0
        for item in batches:
            stop.check()
            images = item["image"].to(self.device, non_blocking=True).contiguous(memory_format=fmt)
            heatmaps = item["heatmaps"].to(self.device, non_blocking=True)
            visible = item["visible"].to(self.device, non_blocking=True)
            with autocast(self.precision, self.device):
                outputs = self.net(images)
            if self.teacher is not None:
                heatmaps = torch.lerp(heatmaps, self.teacher(images), self.cfg.teacher_weight)
            loss = total_loss(outputs, heatmaps, visible, self.kinds, self.cfg.regression_loss)
            if not torch.isfinite(loss):
                raise DunetError(f"loss is {loss.item()} at epoch {self.epoch + 1}, step {self.step}: stopping; "
                                 f"the last good checkpoint is kept in {self.out / 'last'}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            total += loss.item() * len(images)
            seen += len(images)
            self._follow_free_cores()
        if self.ddp.world > 1:
            stats = torch.tensor([total, float(seen)])
            dist.all_reduce(stats)
            total, seen = stats.tolist()
        return total / max(seen, 1), int(seen)

    def _follow_free_cores(self) -> None:
        """`threads: 0`: one thread on a core that other work holds stalls the others at every layer (the demo
        model: 1.6 against 58.8 images/s, docs/hardware.md), so work that starts after the run did is left its core."""
        threads = self.core_watch.poll() if self.core_watch is not None else None
        if threads is not None:
            torch.set_num_threads(threads)
            cores = usable_cores()
            self.log(f"{threads} thread(s) from step {self.step + 1}: other work keeps {cores - threads} of the "
                     f"{cores} usable core(s) busy")

    def validate(self) -> dict:
        if not self.ddp.main:
            return {}
        cfg = self.cfg
        model = self.ema.module if self.ema is not None else self.model
        runner = torch_model(model, cfg, self.spec, precision=self.precision, device=self.device)
        pred, idx = predict_source(runner.predict_crops, self.val_source, cfg.model.input_size,
                                   indices=self.val_idx, batch_size=cfg.optim.batch_size,
                                   workers=self.plan.workers, flip=cfg.flip_test and self.spec.can_flip,
                                   skip_bad=cfg.data.skip_bad)
        self.model.train()
        return score(self.val_source, pred, idx)

    def _end_epoch(self, train_loss: float, images_per_s: float, seconds: float, metrics: dict) -> None:
        if self.ddp.world > 1:
            dist.barrier()
        if not self.ddp.main:
            return
        key, higher = main_metric(metrics) if metrics else (None, False)
        value = metrics.get(key) if key else None
        improved = value is not None and (self.best is None or (value > self.best if higher else value < self.best))
        if improved:
            self.best = value
        # `last` goes last: a process killed before it resumes from the previous epoch, which redoes this
        # one and writes the same best/ and log row again (the row is trimmed on resume).
        if improved:
            self._save("best", metrics)
        row = {"epoch": self.epoch, "lr": self.cfg.optim.lr_at(self.epoch - 1), "train_loss": train_loss,
               "images_per_s": round(images_per_s, 2), "seconds": round(seconds, 1),
               "metric": key or "", "value": value if value is not None else ""}
        write_log(self.out / "log.csv", row)
        self._save("last", metrics)
        plot_curves(self.out / "log.csv", self.out / "curves.png")
        shown = f", {key} {format_value(key, value)}" + (" (best)" if improved else "") if value is not None else ""
        self.log(f"epoch {self.epoch}/{self.cfg.optim.epochs}: loss {train_loss:.6f}, "
                 f"{images_per_s:.1f} img/s{shown}")


class StopRequest:
    """The handler of SIGINT and SIGTERM during training: a KeyboardInterrupt, remembered. Python drops an
    exception raised where it cannot propagate (a fork hook of the data loader, a finaliser: "Exception ignored
    in ..."), and a run of 1,000 epochs then went on; `check`, between batches, raises it again."""

    def __init__(self):
        self.requested = False

    def __call__(self, number, frame):
        self.requested = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while the block runs, then act on them: what it writes is not cut in half."""
    caught = []
    handlers = {sig: signal.signal(sig, lambda number, frame: caught.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


def trim_log(path: Path, epochs: int) -> None:
    """Keep the rows of log.csv up to epoch `epochs`: later ones belong to an epoch that is done again."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    kept = [row for row in rows if (row.get("epoch") or "").isdigit() and int(row["epoch"]) <= epochs]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=reader.fieldnames)
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_file(path, text.getvalue())


def write_log(path: Path, row: dict) -> None:
    new = not path.exists()
    try:
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    except OSError as err:  # a row cut short belongs to an epoch `last` does not hold: trim_log drops it on resume
        raise DunetError(f"{path}: cannot write the training log ({err.strerror or err})") from None


def plot_curves(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    axes[0].set(xlabel="epoch", ylabel="train loss", yscale="log", title="loss")
    points = [(int(r["epoch"]), float(r["value"])) for r in rows if r["value"] not in ("", None)]
    if points:
        axes[1].plot(*zip(*points), marker="o", color="tab:orange")
        axes[1].set(xlabel="epoch", ylabel=rows[-1]["metric"], title="validation")
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, png_path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DunetError(f"{png_path}: cannot write the training curves ({err.strerror or err})") from None
    finally:
        plt.close(fig)


LOCK_FILE = ".lock"


@contextmanager
def run_dir_lock(out: Path):
    """Hold an exclusive lock on the run directory while training, so that a second `dunet train` on it
    (a --resume while the first run still goes on, say) stops with a message instead of both writing
    its checkpoints. The kernel's lock (flock) goes with the process, even a killed one: no stale lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise DunetError(f"{out}: another `dunet train` (pid {owner}) is training in this run directory; "
                             "wait for it to end, or stop it first (SIGTERM or Ctrl-C; its last completed epoch is kept)") from None
        with contextlib.suppress(OSError):  # the pid only helps the message above: a full disk may keep it out
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, log=print) -> dict:
    out = Path(out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 owns the run directory
    with run_dir_lock(out) if main_process else nullcontext():
        trainer = Trainer(cfg, out, resume=resume, log=log)
        try:
            return trainer.fit()
        finally:
            if trainer.ddp.world > 1 and dist.is_initialized():
                dist.destroy_process_group()


def resumed_config(out_dir: Path, overrides: list[str]) -> TrainConfig:
    """The config of an existing run, with `--set` overrides applied (e.g. more epochs)."""
    from dunet.config import apply_overrides

    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise DunetError(f"--resume: {path} not found (is {out_dir} a dunet run directory?)")
    copy = Path(out_dir) / "last" / "card.json"  # the checkpoint's own copy of the config (in its model card)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DunetError(f"--resume: {path} is damaged ({reason}); {copy} holds the run's config") from None
    if not isinstance(data, dict):
        raise DunetError(f"--resume: {path} is empty or not a mapping; {copy} holds the run's config")
    data.pop("spec", None)
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except DunetError as err:
        raise DunetError(f"{path}: {err}") from None


