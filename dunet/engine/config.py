"""The training config: one YAML file per recipe (see configs/). Every option is documented here, once.

The defaults are the paper's (RMSprop, lr 2.5e-4, batch 24, face schedule); the shipped recipes say
what they change for the CPU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dunet import DunetError
from dunet.config import apply_overrides, check_device_name, check_range, choice, from_dict
from dunet.data.heatmaps import HeatmapCodec
from dunet.data.transforms import Augmentation
from dunet.models.config import ModelConfig

REGRESSION_LOSSES = ("mse", "awing")  # dunet.engine.losses computes each


MAX_SEED = 2**32 - 1  # numpy's seeds stop here


@dataclass(frozen=True)
class DataConfig:
    # FORMAT:PATH of the training data (see docs/data.md), or a list of sources with the same landmark layout
    # (e.g. [lsp:DIR, lspet:DIR]); with a list, the held-out split comes off the first source only.
    train: tuple[str, ...] = ("synthetic:2000:0",)
    # Per-source sampling weights, one per `train` source: each epoch draws weight x size samples of a source
    # (2 = every sample twice, 0.5 = a different random half each epoch). Empty = 1 for every source.
    train_weights: tuple[float, ...] = ()
    val: str = ""  # FORMAT:PATH of validation data; empty = split `val_fraction` off the (first) training source
    val_fraction: float = 0.1  # share of the training data held out when `val` is empty
    split_seed: int = 0  # seed of that split (keep it fixed to compare runs on the same held-out set)
    sigma: float = 0.0  # Gaussian sigma in heatmap pixels; 0 = 1 px at 64x64 heatmaps, scaled with resolution
    scale_range: tuple[float, float] = (0.75, 1.25)  # random zoom (paper)
    rotation: float = 30.0  # random rotation in +-degrees (paper)
    flip: bool = True  # random horizontal flip with left/right landmarks swapped (paper)
    color_jitter: float = 0.4  # per-channel gain in [1 - j, 1 + j] (reference code: 0.6-1.4)
    occlusion: float = 0.0  # share of crops with a random rectangle painted over them (not in the paper)
    shift: float = 0.0  # the crop's centre moves by up to this share of its side each way (not in the paper)
    workers: int = -1  # data-loading processes; -1 = auto (sized with the threads: see dunet/engine/hardware.py)
    skip_bad: bool = False  # skip unreadable or invalid samples (counted in the log) instead of failing
    # What PCK / NME divide by: "" = the data set's own (inter-ocular for faces, torso for LSP, box otherwise),
    # "box", "interocular:NAME,NAME" or "torso:NAME,NAME" (for your own points). Saved with the model.
    normaliser: str = ""

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train: give at least one FORMAT:PATH source")
        if self.train_weights and len(self.train_weights) != len(self.train):
            raise ValueError(f"train_weights: {len(self.train_weights)} weights for {len(self.train)} train sources")
        if any(not (w >= 0 and w < 1e6) for w in self.train_weights) or (self.train_weights and not any(self.train_weights)):
            raise ValueError(f"train_weights {list(self.train_weights)}: weights must be >= 0, and not all 0")
        if not 0.0 <= self.occlusion <= 1.0:
            raise ValueError(f"occlusion {self.occlusion}: the share of occluded crops must be in [0, 1]")
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, below_high=True, note="0 = no held-out split")
        check_range("split_seed", self.split_seed, 0, MAX_SEED)
        check_range("sigma", self.sigma, 0.0, 100.0, note="heatmap pixels; 0 = the default")
        if len(self.scale_range) != 2:
            raise ValueError(f"scale_range {list(self.scale_range)}: give two numbers, [low, high]")
        for bound in self.scale_range:
            check_range("scale_range", bound, 0.0, 100.0, above_low=True, note="zoom factors, e.g. [0.75, 1.25]")
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"scale_range {list(self.scale_range)}: low must not exceed high")
        check_range("rotation", self.rotation, 0.0, 180.0, note="degrees")
        check_range("color_jitter", self.color_jitter, 0.0, 1.0)
        check_range("shift", self.shift, 0.0, 0.5, note="a share of the crop side each way")

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(tuple(self.scale_range), self.rotation, self.flip, self.color_jitter, self.occlusion,
                            self.shift)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = choice("rmsprop", ("rmsprop", "adam"), "paper: RMSprop")
    lr: float = 2.5e-4  # initial learning rate (paper)
    weight_decay: float = 0.0  # L2 penalty of the optimizer; 0 = none (paper)
    batch_size: int = 24  # paper: 24
    epochs: int = 100  # passes over the training data
    # Learning-rate decay: at each milestone the rate is multiplied by the matching `gammas` entry. A milestone
    # below 1 is a fraction of the run (0.6 of 100 epochs = epoch 60), so changing `epochs` keeps the schedule;
    # 1 or more is an epoch number. Paper, faces: /5 at 30, /2 at 60, /2 at 90 of 100 epochs ([0.3, 0.6, 0.9]).
    # Pose: x0.2 at 100, x0.5 at 140 and 160 of 200 ([0.5, 0.7, 0.8]).
    milestones: tuple[float, ...] = (0.3, 0.6, 0.9)
    gammas: tuple[float, ...] = (0.2, 0.5, 0.5)  # learning-rate factor at each milestone
    # Exponential moving average of the weights (and BN statistics), updated after every step with this
    # decay; 0 = off. With it on, validation, `best/` and every checkpoint's model weights are the average
    # (so eval, predict, export and init use it); the raw weights training resumes from are kept in the
    # checkpoint's training state. 0.995 averages over about the last 200 steps. The decay ramps up as
    # (1 + n) / (10 + n) over the first updates, so the average follows the weights early on.
    ema: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema {self.ema}: the decay must be in [0, 1) (0 = off)")
        if len(self.milestones) != len(self.gammas):
            raise ValueError("milestones and gammas must have the same length")
        check_range("lr", self.lr, 0.0, 10.0, above_low=True)
        check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("batch_size", self.batch_size, 1, 1 << 16)
        check_range("epochs", self.epochs, 1, 1_000_000)
        for milestone in self.milestones:
            check_range("milestones", milestone, 0)
        for gamma in self.gammas:
            check_range("gammas", gamma, 0.0, above_low=True)

    def milestone_epochs(self) -> list[int]:
        """The milestones as epoch numbers (fractions of the run resolved against `epochs`)."""
        return [round(m * self.epochs) if m < 1 else int(m) for m in self.milestones]

    def lr_at(self, epoch: int) -> float:
        lr = self.lr
        for milestone, gamma in zip(self.milestone_epochs(), self.gammas):
            if epoch >= milestone:
                lr *= gamma
        return lr


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Loss at every supervised head: "regression" = MSE on Gaussian heatmaps, "detection" = sigmoid
    # cross-entropy on binary disks. With model.refine, one entry per pass, e.g. [detection, regression].
    supervision: tuple[str, ...] = ("regression",)
    # The loss of regression heads: mse, or awing (adaptive wing, Wang et al. 2019: weighs errors at the peaks).
    regression_loss: str = choice("mse", REGRESSION_LOSSES, "mse, or awing (adaptive wing loss)")
    seed: int = 0  # seeds initialisation, shuffling and augmentation
    # auto = bf16 autocast where the hardware computes bfloat16 natively (a CPU with AVX-512 BF16 or AMX, a GPU
    # that supports it), fp32 elsewhere: emulated bf16 is several times slower than fp32.
    precision: str = choice("auto", ("auto", "fp32", "bf16"), "auto: bf16 where native, else fp32")
    device: str = "auto"  # auto (a CUDA GPU if there is one, else the CPU), cpu, cuda or cuda:N
    channels_last: bool = True  # NHWC memory format: faster convolutions on CPUs and GPUs
    # torch threads per process; 0 = all usable cores (divided between distributed processes); more than the
    # cores is capped to them, saying so
    threads: int = 0
    eval_every: int = 1  # validate every N epochs (and always after the last)
    flip_test: bool = False  # average predictions with the mirrored image at validation
    max_val_samples: int = 0  # 0 = the whole validation set
    # Gaussian blur (sigma, heatmap pixels) of predicted heatmaps before the Taylor sub-pixel step (DARK,
    # Zhang et al. 2020); 0 = none. Helps smooth, well-resolved peaks and hurts coarse ones: pick it on
    # training data (tools/ship_pretrained.py --tune-decode), try it with `dunet eval --decode-blur`.
    decode_blur: float = 0.0
    # Weights to start from (fine-tuning): a checkpoint, run directory, exported .safetensors or a pretrained
    # model name (`dunet models`). Tensors whose name and shape fit are copied; the rest (e.g. the heads when
    # the landmark count differs) keep their fresh initialisation. Ignored by --resume. "" = from scratch.
    init: str = ""
    # Knowledge distillation: a trained model (same forms as `init`) whose final heatmaps, on the same augmented
    # crop, join the labels as targets: each head regresses (1 - teacher_weight) x the labelled Gaussians +
    # teacher_weight x the teacher's heatmaps. Typical: the fp32 parent teaching its quantized copy. "" = none.
    teacher: str = ""
    teacher_weight: float = 0.5  # share of the target that comes from the teacher, in [0, 1]

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: must be >= 0 (0 = all usable cores)")
        if self.data.workers < -1:
            raise ValueError(f"data.workers {self.data.workers}: must be >= 0, or -1 for auto")
        for s in self.supervision:
            if s not in ("regression", "detection"):
                raise ValueError(f"supervision {s!r}: choose regression or detection")
        check_range("decode_blur", self.decode_blur, 0.0, 100.0, note="heatmap pixels; 0 = no blur")
        check_range("seed", self.seed, 0, MAX_SEED)
        check_range("eval_every", self.eval_every, 1, note="validate every N epochs")
        check_range("max_val_samples", self.max_val_samples, 0, note="0 = the whole validation set")
        if self.model.in_channels != 3:
            raise ValueError(f"model.in_channels {self.model.in_channels}: training images are RGB, so it must be 3")
        check_range("teacher_weight", self.teacher_weight, 0.0, 1.0, note="share of the target from the teacher")
        if self.teacher and "detection" in self.supervision:
            raise ValueError("teacher: distillation blends regression heatmaps, so every supervision entry must be "
                             "regression")
        passes = 2 if self.model.refine else 1
        if len(self.supervision) not in (1, passes):
            raise ValueError(f"supervision needs 1 or {passes} entries (one per pass)")

    @property
    def codec(self) -> HeatmapCodec:
        """The heatmap codec of this recipe, the one place it is built: training targets and decoding."""
        return HeatmapCodec(self.model.input_size, sigma=self.data.sigma, blur=self.decode_blur)

    def supervision_per_head(self, heads_per_pass: int) -> list[str]:
        passes = 2 if self.model.refine else 1
        per_pass = list(self.supervision) * (passes if len(self.supervision) == 1 else 1)
        return [kind for kind in per_pass for _ in range(heads_per_pass)]

    def model_card(self, spec, provenance: dict | None = None):
        """The inference contract of a model trained with this recipe on `spec`'s landmarks (dunet.card): its
        network, codec and head kinds; the detector of a shipped model's task (`dunet.card.detector_for`)."""
        from dunet.card import ModelCard, detector_for

        provenance = provenance or {}
        return ModelCard(self.model, spec, self.codec, tuple(self.supervision_per_head(self.model.heads)),
                         detector_for(provenance.get("task")), provenance)


def card_from_training(metadata: dict[str, str], where: str):
    """The card of a model file written by dunet 0.1.0, before cards: its training config with the spec inside
    (metadata `dunet_config` and `dunet_meta`; in ONNX `train_config` and `spec`)."""
    from dunet.card import read_json
    from dunet.data.spec import spec_from_dict

    if "dunet_config" in metadata:
        config = read_json(metadata, "dunet_config", where)
        meta = read_json(metadata, "dunet_meta", where) if "dunet_meta" in metadata else {}
        provenance = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
        spec = config.pop("spec", None)
    else:
        config, provenance = read_json(metadata, "train_config", where), {}
        spec = read_json(metadata, "spec", where) if "spec" in metadata else None
    if spec is None:
        raise DunetError(f"{where}: its model card is incomplete: no landmark spec")
    try:
        train_config = config_from_dict(config)
    except DunetError as err:
        raise DunetError(f"{where}: its config is not a dunet training config ({err})") from None
    try:
        landmarks = spec_from_dict(spec)
    except (KeyError, TypeError, ValueError, DunetError) as err:
        raise DunetError(f"{where}: its landmark spec is damaged ({type(err).__name__}: {err})") from None
    try:
        return train_config.model_card(landmarks, provenance)
    except DunetError as err:
        raise DunetError(f"{where}: {err}") from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML recipe (or the defaults when `path` is None) and apply `--set key=value` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DunetError(f"config file {path} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:  # a model file or an image given in its place, say
            raise DunetError(f"config file {path}: not a text file (byte {err.start} is not UTF-8); give a YAML "
                             "recipe") from None
        except OSError as err:
            raise DunetError(f"config file {path}: cannot read it ({err.strerror or err})") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)  # one line: the problem and where, not YAML's excerpt
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise DunetError(f"config file {path}: not valid YAML ({problem}{at})") from None
        if not isinstance(data, dict):
            raise DunetError(f"config file {path}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides))
    try:
        return from_dict(TrainConfig, data)
    except DunetError as err:
        raise DunetError(f"{path}: {err}" if path else str(err)) from None


def config_to_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_differences(a: TrainConfig, b: TrainConfig) -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) for every key where the two configs differ."""
    def flat(tree: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    left, right = flat(config_to_dict(a)), flat(config_to_dict(b))
    return [(key, left.get(key), right.get(key)) for key in sorted(set(left) | set(right))
            if left.get(key) != right.get(key)]


def config_from_dict(data: dict) -> TrainConfig:
    return from_dict(TrainConfig, data)


def describe_options() -> str:
    """Every option with its default and what it means, one line each, for `dunet train --options`."""
    from dunet.config import field_docs

    lines = []

    def walk(cls, prefix):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(default):
                walk(type(default), prefix + f.name + ".")
                continue
            choices = f.metadata.get("choices")
            extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
            lines.append(f"{prefix}{f.name} = {default!r}{extra}: {docs.get(f.name, '')}")

    walk(TrainConfig, "")
    return "\n".join(lines)
