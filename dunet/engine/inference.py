"""A trained landmark model ready to use: network + config + landmark spec, from a checkpoint,
a single-file model or a pretrained name. Used by eval, predict, export and the demo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dunet import DunetError
from dunet.data.spec import DatasetSpec
from dunet.engine.config import TrainConfig, config_from_dict
from dunet.engine.losses import final_heatmaps
from dunet.models import build_model


def spec_to_dict(spec: DatasetSpec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def spec_from_dict(data: dict) -> DatasetSpec:
    def pairs(value):
        return None if value is None else tuple(tuple(int(i) for i in p) for p in value)

    norm_kind, norm_arg = data.get("normaliser", ("bbox", None))
    return DatasetSpec(
        name=data["name"],
        keypoints=tuple(data["keypoints"]),
        flip_pairs=pairs(data.get("flip_pairs")),
        skeleton=pairs(data.get("skeleton")) or (),
        normaliser=(norm_kind, tuple(norm_arg) if norm_arg is not None else None),
        box_margin=float(data.get("box_margin", 1.25)),
    )


class LandmarkModel:
    """Network in eval mode + what is needed to use it: the train config and the landmark spec."""

    def __init__(self, model: nn.Module, config: TrainConfig, spec: DatasetSpec, source: str = "",
                 precision: str = "auto", device: str | torch.device = "cpu"):
        from dunet.engine.hardware import choose_precision, resolve_device

        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.eval().to(self.device)
        self.config = config
        self.spec = spec
        self.source = source
        self.precision, self.precision_reason = choose_precision(precision, self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.kinds = config.supervision_per_head(config.model.heads)  # per head, both passes with refine

    @property
    def input_size(self) -> int:
        return self.config.model.input_size

    @property
    def name(self) -> str:
        m = self.config.model
        return f"{m.arch}({m.units})" + (f"-{m.quant}" if m.quant != "none" else "") + (
            f" [{Path(self.source).name}]" if self.source else "")

    def check_source(self, source) -> None:
        if source.spec.num_keypoints != self.spec.num_keypoints:
            raise DunetError(f"{self.source or 'the model'} predicts {self.spec.num_keypoints} landmarks "
                             f"({self.spec.name}) but {source.name} has {source.spec.num_keypoints}")

    def quant_report(self, metrics: dict) -> dict:
        """Balance index (paper eq. 7) for quantized models; nothing for full-precision ones."""
        if self.config.model.quant == "none":
            return {}
        from dunet.quant.efficiency import balance_report

        nme = metrics.get("nme_io") or metrics.get("nme_box")
        if nme is None:
            return {}  # the balance index is defined on NME (paper eq. 7)
        return balance_report(self.model, self.config.model, nme)

    @classmethod
    def load(cls, path_or_name: str | Path, precision: str = "auto", device: str = "cpu") -> "LandmarkModel":
        """From a checkpoint directory, a run directory, a `.safetensors` model or a pretrained name."""
        from dunet.checkpoint import load_checkpoint, load_weights
        from dunet.engine.pretrained import resolve_pretrained

        path = Path(path_or_name)
        if not path.exists() and not any(c in str(path_or_name) for c in "/\\."):  # a bare name
            path = resolve_pretrained(str(path_or_name))
        from dunet.quant.packing import is_packed_file

        if path.is_file() and is_packed_file(path):
            return cls._load_packed(path, precision, device)
        ckpt = load_checkpoint(path)
        cfg_dict = dict(ckpt.config)
        spec_dict = cfg_dict.pop("spec", None)
        try:
            config = config_from_dict(cfg_dict)
        except DunetError as err:
            raise DunetError(f"{ckpt.path}: its config is not a dunet training config ({err})") from None
        if spec_dict is None:
            raise DunetError(f"{ckpt.path}: no landmark spec in the checkpoint config")
        model = build_model(config.model)
        load_weights(model, ckpt)
        return cls(model, config, spec_from_dict(spec_dict), source=str(ckpt.path), precision=precision, device=device)

    @classmethod
    def _load_packed(cls, path: Path, precision: str, device: str) -> "LandmarkModel":
        from dunet.quant.packing import load_packed

        cfg_dict, state = load_packed(path)
        cfg_dict = dict(cfg_dict)
        spec_dict = cfg_dict.pop("spec", None)
        if spec_dict is None:
            raise DunetError(f"{path}: no landmark spec in the packed model's config")
        config = config_from_dict(cfg_dict)
        model = build_model(config.model)
        model.load_state_dict(state, strict=True)
        return cls(model, config, spec_from_dict(spec_dict), source=str(path), precision=precision, device=device)

    def _autocast(self):
        from dunet.engine.hardware import autocast

        return autocast(self.precision, self.device)

    def set_decode_blur(self, sigma: float | None) -> None:
        """Change the heatmap blur before sub-pixel decoding (None: keep the model's)."""
        if sigma is None:
            return
        if sigma < 0:
            raise DunetError(f"--decode-blur {sigma}: must be >= 0 (0 = no blur)")
        self.config = dataclasses.replace(self.config, decode_blur=float(sigma))

    @torch.no_grad()
    def heatmaps(self, images: Tensor, flip: bool = False) -> Tensor:
        """(B, K, S/4, S/4) float32 heatmaps of the final head; `flip` averages with the mirrored input."""
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        x = images.to(self.device).contiguous(memory_format=fmt)
        with self._autocast():
            out = final_heatmaps(self.model(x), self.kinds)
            if flip:
                if not self.spec.can_flip:
                    raise DunetError(f"flip test needs left/right pairs, which the {self.spec.name!r} spec lacks")
                mirrored = final_heatmaps(self.model(torch.flip(x, dims=[3])), self.kinds)
                mirrored = torch.flip(mirrored, dims=[3])[:, torch.as_tensor(self.spec.flip_index())]
                out = (out + mirrored) / 2
        return out.float().cpu()

    def predict_crops(self, images: Tensor, crop_to_image: Tensor | np.ndarray, flip: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (B, K, 2) in original-image pixels and their scores (B, K) from cropped inputs.

        The score of a landmark is its heatmap's peak value clipped to [0, 1]: a regression head is trained
        towards a Gaussian of height 1 at the landmark (so ~1 = a clear, typical peak, ~0 = no evidence),
        a detection head outputs probabilities already. It is not a calibrated probability of being right;
        `confidence_auc` measures how well it ranks good points above bad ones."""
        from dunet.data.heatmaps import heatmaps_to_image

        coords, peaks = heatmaps_to_image(self.heatmaps(images, flip=flip), crop_to_image,
                                          blur_sigma=self.config.decode_blur)
        return coords.numpy(), peaks.clamp(0.0, 1.0).numpy()


def confidence_auc(scores, errors, threshold: float) -> float | None:
    """How well landmark scores separate good points from bad ones: the ROC AUC of `scores` as a detector
    of "error <= threshold" (1 = every good point scores above every bad one, 0.5 = chance). `scores` and
    `errors` have the same shape (e.g. (N, K): errors normalised like the metric, NaN = unlabelled, left
    out). None when all points are good or all bad."""
    scores, errors = np.asarray(scores, np.float64).ravel(), np.asarray(errors, np.float64).ravel()
    if scores.shape != errors.shape:
        raise DunetError(f"confidence_auc: {scores.size} scores but {errors.size} errors")
    keep = np.isfinite(errors) & np.isfinite(scores)
    good = errors[keep] <= threshold
    scores = scores[keep]
    n_good, n_bad = int(good.sum()), int((~good).sum())
    if n_good == 0 or n_bad == 0:
        return None
    # Mann-Whitney U with average ranks for ties: P(score of a good point > score of a bad one).
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


BACKENDS = ("auto", "torch", "onnx", "openvino")


def fastest_backend(device: str = "auto") -> str:
    """The fastest runtime installed for `device`: OpenVINO, else onnxruntime, else PyTorch (bench/infer.py:
    OpenVINO bf16 / int8 are 2-4x PyTorch on a CPU). A GPU (asked for, or found by "auto") runs PyTorch."""
    import importlib.util

    from dunet.engine.hardware import resolve_device

    if resolve_device(device).type != "cpu":
        return "torch"
    if importlib.util.find_spec("onnx") is None:  # exporting to either runtime needs it
        return "torch"
    for backend, module in (("openvino", "openvino"), ("onnx", "onnxruntime")):
        if importlib.util.find_spec(module) is not None:
            return backend
    return "torch"


def load_runner(checkpoint: str | None, model_name: str | None, *, backend: str = "auto",
                precision: str = "auto", device: str = "auto", threads: int = 0) -> LandmarkModel:
    """The model a command was pointed at: a CHECKPOINT path or a pretrained --model NAME.

    backend "auto": an exported .onnx / .xml file runs on its runtime; a PyTorch model on the fastest
    runtime installed (`fastest_backend`), converted once and cached (`dunet.engine.exported.cached_export`)."""
    if (checkpoint is None) == (model_name is None):
        raise DunetError("give either a CHECKPOINT path or --model NAME")
    if backend not in BACKENDS:
        raise DunetError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    target = checkpoint or model_name
    suffix = Path(str(target)).suffix
    if backend in ("auto", "torch") and suffix in (".onnx", ".xml"):
        backend = "onnx" if suffix == ".onnx" else "openvino"
    if backend != "torch" and device not in ("auto", "cpu"):
        if backend != "auto":
            raise DunetError(f"--device {device}: the {backend} backend runs on the CPU; use --backend torch")
        backend = "torch"
    if model_name is not None:
        from dunet.engine.pretrained import resolve_pretrained

        target = resolve_pretrained(model_name)
    if suffix in (".onnx", ".xml"):
        from dunet.engine.exported import ExportedLandmarkModel

        return ExportedLandmarkModel.load(target, backend, precision, threads)
    if backend == "auto":
        backend = fastest_backend(device)
    runner = LandmarkModel.load(target, precision=precision, device=device if backend == "torch" else "cpu")
    if backend == "torch":
        return runner
    from dunet.engine.exported import ExportedLandmarkModel, cached_export

    exported = ExportedLandmarkModel.load(cached_export(runner), backend, precision, threads)
    exported.source = runner.source  # name the model the user gave, not the cache file
    return exported
