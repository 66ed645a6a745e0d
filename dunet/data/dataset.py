"""The training / evaluation pipeline: a torch Dataset over a `Source`, its epoch sampler and its DataLoader.

Per sample: load the image, draw one affine (crop around the box x the spec's margin, scale, rotation,
flip), warp image and keypoints with it, jitter colours, and encode heatmap targets. Randomness is a
pure function of (seed, epoch, index), so runs repeat exactly whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dunet import DunetError
from dunet.data.heatmaps import HeatmapCodec
from dunet.data.sample import BadItem, Source, normaliser
from dunet.data.transforms import (
    AugmentParams, Augmentation, apply_affine, apply_color, apply_occluder, crop_matrix, invert_affine, network_input,
    unit_range, warp_image,
)

log = logging.getLogger("dunet.data")

MAX_REPLACEMENTS = 20


class LandmarkDataset(Dataset):
    """Samples of `source` as dicts of tensors:

    image (3, S, S) float32 RGB in [0, 1]; heatmaps (K, S/4, S/4) float32; visible (K,) float32 = labelled
    and inside the crop (use it to mask the loss); keypoints (K, 2) float32 in crop pixels; crop_to_image
    (2, 3) float32 affine from crop pixels to original-image pixels; normaliser () float32, the metric's
    normaliser in original-image pixels (NaN if unknown); index () int64, the sample actually returned
    (its original keypoints are `source.samples[index]`).

    `augment`: True = the default `Augmentation`, an `Augmentation` = that one, False = the plain box
    (evaluation, prediction). `codec` encodes the heatmaps (default: `HeatmapCodec(input_size)`).
    A sample whose image turns out bad is logged and replaced by another, deterministically chosen one
    (bad_sample="replace"), so a training epoch never dies on one file; bad_sample="raise" raises instead,
    and bad_sample="skip" returns the `BadItem` in place of the sample (evaluation: a stand-in would be
    scored twice).
    """

    def __init__(
        self,
        source: Source,
        input_size: int = 256,
        augment: Augmentation | bool = True,
        seed: int = 0,
        codec: HeatmapCodec | None = None,
        bad_sample: str = "replace",
    ):
        codec = codec or HeatmapCodec(input_size)
        if codec.input_size != input_size:
            raise DunetError(f"input size {input_size} but the heatmap codec's is {codec.input_size}")
        if bad_sample not in ("replace", "raise", "skip"):
            raise DunetError(f"bad_sample must be 'replace', 'raise' or 'skip', got {bad_sample!r}")
        if seed < 0:
            raise DunetError(f"seed must be >= 0, got {seed}")
        if len(source) == 0:
            raise DunetError(f"{source.name}: the data set is empty")
        self.source = source
        self.spec = source.spec
        self.input_size = input_size
        self.codec = codec
        if augment is True:
            augment = Augmentation()
        self.augment = augment or None  # None: the plain crop
        if self.augment and not self.spec.can_flip:  # never flip a landmark set with unknown sides
            self.augment = dataclasses.replace(self.augment, flip=False)
        self.seed = seed
        self.bad_sample = bad_sample
        self.epoch = 0
        self.flip_index = self.spec.flip_index()
        self.bad: dict[int, str] = {}  # bad samples met by this process (each worker has its own)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation (and, through `build_loader`, the shuffle) of `epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def params(self, index: int, attempt: int = 0) -> AugmentParams:
        if self.augment is None:
            return AugmentParams()
        return self.augment.draw(np.random.default_rng([self.seed, self.epoch, index, attempt]))

    def crop_side(self, index: int) -> float:
        """Side of the un-augmented crop of sample `index` in original-image pixels."""
        return self.source.samples[index].scale * self.spec.box_margin

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | BadItem:
        index = int(index)
        current = index
        for attempt in range(MAX_REPLACEMENTS + 1):
            try:
                return self.make(current, self.params(current, attempt))
            except DunetError as err:
                if self.bad_sample == "raise":
                    raise
                if self.bad_sample == "skip":
                    path = self.source.samples[index].image_path
                    return BadItem(path, str(err).removeprefix(f"{path}: "))
                if current not in self.bad:
                    self.bad[current] = str(err)
                    log.warning("skipping bad sample %d: %s", current, err)
                # A deterministic stand-in, different for each attempt.
                rng = np.random.default_rng([self.seed, self.epoch, index, attempt, 1])
                current = int(rng.integers(len(self)))
        raise DunetError(
            f"{self.source.name}: {MAX_REPLACEMENTS + 1} bad samples in a row around index {index}; "
            f"run `dunet data check {self.source.name}`"
        )

    def make(self, index: int, params: AugmentParams) -> dict[str, torch.Tensor]:
        """Sample `index` under the given augmentation."""
        sample = self.source.samples[index]
        image = self.source.load_image(index)
        size = self.input_size
        side = self.crop_side(index) * params.scale
        matrix = crop_matrix(sample.center + np.multiply(params.shift, side), side, size, params.rotation, params.flip)
        crop = unit_range(warp_image(image, matrix, size))
        if params.color != (1.0, 1.0, 1.0):
            crop = apply_color(crop, params.color)
        if params.occluder is not None:
            crop = apply_occluder(crop, params.occluder, params.occluder_color)
        keypoints = apply_affine(sample.keypoints, matrix)
        visible = sample.visible.copy()
        if params.flip:
            keypoints, visible = keypoints[self.flip_index], visible[self.flip_index]
        keypoints = keypoints.astype(np.float32)
        # Gaussian targets for every head: a detection head's disk is cut from them in the loss.
        heatmaps, visible = self.codec.encode(keypoints, visible)
        return {
            "image": torch.from_numpy(network_input(crop)),
            "heatmaps": torch.from_numpy(heatmaps),
            "visible": torch.from_numpy(visible.astype(np.float32)),
            "keypoints": torch.from_numpy(keypoints),
            "crop_to_image": torch.from_numpy(invert_affine(matrix)).float(),
            "normaliser": torch.tensor(normaliser(self.spec, sample), dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class EpochSampler(Sampler[int]):
    """The order of one epoch of `dataset`: a pure function of (dataset.seed, dataset.epoch), so a resumed
    run repeats it whatever the number of workers. `groups` are the indices of each source (default: the
    whole dataset as one); with `weights`, a source gives weight x its size samples: every sample int(weight)
    times, plus a random share of the rest, drawn again each epoch. Process `rank` of `world` (distributed
    training) gets an equal share of the shuffled order."""

    def __init__(self, dataset: LandmarkDataset, groups: list[list[int]] | None = None,
                 weights: tuple[float, ...] = (), rank: int = 0, world: int = 1):
        self.dataset, self.rank, self.world = dataset, rank, world
        self.groups = groups if groups is not None else [list(range(len(dataset)))]
        self.weights = weights

    def __len__(self) -> int:
        weights = self.weights or (1.0,) * len(self.groups)
        drawn = sum(int(w) * len(g) + round((w - int(w)) * len(g)) for g, w in zip(self.groups, weights))
        return drawn // self.world

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.dataset.seed * 100_003 + self.dataset.epoch)
        if self.weights:
            drawn = []
            for group, weight in zip(self.groups, self.weights):
                whole, part = int(weight), round((weight - int(weight)) * len(group))
                extra = torch.randperm(len(group), generator=gen)[:part].tolist()
                drawn += group * whole + [group[i] for i in sorted(extra)]
        else:  # no draws from `gen` here: that would change the order of runs without weights
            drawn = [i for group in self.groups for i in group]
        order = [drawn[i] for i in torch.randperm(len(drawn), generator=gen).tolist()]
        share = len(order) // self.world
        return iter(order[self.rank * share:(self.rank + 1) * share])


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
SIGNAL_MASKS = hasattr(signal, "pthread_sigmask")  # not on Windows, whose workers are spawned, not forked


class SignalSafeLoader(DataLoader):
    """A DataLoader whose workers leave SIGTERM to the main process, and are started with SIGINT and SIGTERM held.

    A SIGTERM sent to the whole process group (`kill -- -PGID`, a service manager, a job scheduler) must reach the
    training process, which saves a checkpoint and then shuts its workers down; a worker killed by it first made
    the run fail with "DataLoader worker ... exited unexpectedly" instead of saving. A forked worker runs the
    training process's handlers until its init has run: a signal landing in that moment (workers are started
    each epoch) raised KeyboardInterrupt in the worker, which then died, or, stopped inside a fork hook, could not
    exit, and the run hung after saving. So the signals are held while the workers start, and each worker lets
    them through once SIGTERM is ignored (a held SIGINT, from Ctrl-C, then stops the worker as it would have)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, worker_init_fn=_leave_sigterm_to_the_main_process, **kwargs)

    def __iter__(self):
        if not SIGNAL_MASKS:
            return super().__iter__()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().__iter__()  # starts the workers; forked with the signals held
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one that came meanwhile is acted on now


def _leave_sigterm_to_the_main_process(worker_id: int) -> None:
    """`worker_init_fn` of every data-loading worker."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def build_loader(
    dataset: LandmarkDataset, batch_size: int, workers: int = 2, sampler: EpochSampler | None = None,
    drop_last: bool = False, pin_memory: bool = False,
) -> SignalSafeLoader:
    """DataLoader for `dataset` in the order of `sampler` (default: `EpochSampler(dataset)`). Call
    `dataset.set_epoch(e)` before iterating epoch e: workers are started per epoch (not persistent) so
    they see the new epoch. (Torch already runs each worker single-threaded; OpenCV's thread count is
    left alone: changing it in a forked worker can hang.)"""
    return SignalSafeLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler if sampler is not None else EpochSampler(dataset),
        num_workers=workers,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
