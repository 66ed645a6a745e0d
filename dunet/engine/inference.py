"""A trained landmark model ready to use: config + landmark spec + a network that some backend runs,
from a checkpoint, a single-file model, an exported ONNX / OpenVINO file or a pretrained name. Used by
eval, predict, export and the Python API.

`LandmarkModel` does everything around the network once for every backend: the sigmoid of a detection
head, the flip test and the decoding to image pixels. Its `network` maps a float (B, 3, S, S) batch to the
final head's raw heatmaps: `TorchNetwork` here, or a `dunet.deploy` predictor (onnxruntime, OpenVINO).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dunet import DunetError
from dunet.card import ModelCard, card_from_metadata
from dunet.data.spec import DatasetSpec
from dunet.engine.config import TrainConfig
from dunet.models import build_model


class TorchNetwork:
    """A dunet nn.Module run by PyTorch in eval mode on `device`, under autocast for bf16."""

    backend = "torch"

    def __init__(self, model: nn.Module, precision: str = "auto", device: str | torch.device = "cpu",
                 channels_last: bool = False):
        from dunet.engine.hardware import choose_precision, resolve_device

        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.precision, self.precision_reason = choose_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        from dunet.engine.hardware import autocast

        x = images.to(self.device).contiguous(memory_format=self.memory_format)
        with autocast(self.precision, self.device):
            return self.model(x)[-1].float()


class LandmarkModel:
    """A network + what is needed to use it: the train config and the landmark spec.

    `network`: an nn.Module (run by `TorchNetwork` in `precision` on `device`) or any callable from a
    float (B, 3, S, S) batch to the final head's raw heatmaps, with `backend` and `precision` attributes."""

    def __init__(self, network, config: TrainConfig, spec: DatasetSpec, source: str = "",
                 precision: str = "auto", device: str | torch.device = "cpu", provenance: dict | None = None):
        if isinstance(network, nn.Module):
            network = TorchNetwork(network, precision, device, channels_last=config.channels_last)
        self.network = network
        self.config = config
        self.spec = spec
        self.source = source
        self.provenance = provenance or {}  # of its model card: where the weights come from
        self.kinds = config.supervision_per_head(config.model.heads)  # per head, both passes with refine
        self.threads: int | None = None  # the CPU threads load_runner gave it; None: not chosen (or a GPU)

    @property
    def backend(self) -> str:
        return self.network.backend

    @property
    def precision(self) -> str:
        return self.network.precision

    @property
    def model(self) -> nn.Module:
        """The PyTorch network (to export it, pack it or measure it): torch backend only."""
        if not isinstance(self.network, TorchNetwork):
            raise DunetError(f"{self.source}: an exported model has no PyTorch network; use the checkpoint")
        return self.network.model

    @property
    def card(self) -> ModelCard:
        """The model card of this model as it is set now (decode settings included), for the files it exports."""
        return ModelCard(self.config, self.spec, self.provenance)

    @property
    def input_size(self) -> int:
        return self.config.model.input_size

    @property
    def name(self) -> str:
        m = self.config.model
        if self.backend != "torch":
            return f"{m.arch}({m.units}) [{self.backend}: {Path(self.source).name}]"
        return f"{m.arch}({m.units})" + (f"-{m.quant}" if m.quant != "none" else "") + (
            f" [{Path(self.source).name}]" if self.source else "")

    def check_source(self, source) -> None:
        if source.spec.num_keypoints != self.spec.num_keypoints:
            raise DunetError(f"{self.source or 'the model'} predicts {self.spec.num_keypoints} landmarks "
                             f"({self.spec.name}) but {source.name} has {source.spec.num_keypoints}")

    def quant_report(self, metrics: dict) -> dict:
        """Balance index (paper eq. 7) for quantized PyTorch models; nothing for the others."""
        if self.config.model.quant == "none" or self.backend != "torch":
            return {}
        from dunet.models.efficiency import balance_report

        nme = metrics.get("nme_io") or metrics.get("nme_box")
        if nme is None:
            return {}  # the balance index is defined on NME (paper eq. 7)
        return balance_report(self.model, self.config.model, nme)

    @classmethod
    def load(cls, path_or_name: str | Path, precision: str = "auto", device: str = "cpu") -> "LandmarkModel":
        """From a checkpoint directory, a run directory, a `.safetensors` model or a pretrained name."""
        from dunet.checkpoint import load_checkpoint, load_weights
        from dunet.engine.pretrained import resolve_pretrained
        from dunet.quant.packing import is_packed_file, load_packed

        path = Path(path_or_name)
        if not path.exists() and not any(c in str(path_or_name) for c in "/\\."):  # a bare name
            path = resolve_pretrained(str(path_or_name))
        if path.is_file() and is_packed_file(path):
            metadata, state = load_packed(path)
            card = card_from_metadata(metadata, str(path))
        else:
            ckpt = load_checkpoint(path)
            path, card, state = ckpt.path, ckpt.card, ckpt
        model = build_model(card.config.model)
        if isinstance(state, dict):  # a packed file's state dict, else a Checkpoint
            model.load_state_dict(state, strict=True)
        else:
            load_weights(model, state)
        return cls(model, card.config, card.spec, source=str(path), precision=precision, device=device,
                   provenance=card.provenance)

    @classmethod
    def load_exported(cls, path: str | Path, backend: str = "onnx", precision: str = "auto",
                      threads: int = 0) -> "LandmarkModel":
        """An ONNX file or OpenVINO IR from `dunet export`, run by onnxruntime or OpenVINO on the CPU.
        `threads`: the runtime's threads; 0 = every usable core that other work does not keep busy."""
        from dunet.engine.hardware import choose_precision, free_cores

        precision, _ = choose_precision(precision, torch.device("cpu"))
        threads = threads or free_cores()
        if backend == "openvino":
            from dunet.deploy.openvino import OpenVinoPredictor

            # Batches on 2 streams: ~8 % faster.
            network = OpenVinoPredictor(path, precision, threads=threads, streams=min(2, threads))
        elif backend == "onnx":
            from dunet.deploy.runtime import OnnxPredictor

            if Path(path).suffix == ".xml":
                raise DunetError(f"{path}: an OpenVINO IR runs with --backend openvino")
            network = OnnxPredictor(path, threads=threads)
        else:
            raise DunetError(f"backend {backend!r}: an exported model runs with onnx or openvino")
        card = card_from_metadata(network.metadata, str(path))
        return cls(network, card.config, card.spec, source=str(path), provenance=card.provenance)

    def set_decode_blur(self, sigma: float | None) -> None:
        """Change the heatmap blur before sub-pixel decoding (None: keep the model's)."""
        if sigma is None:
            return
        if sigma < 0:
            raise DunetError(f"--decode-blur {sigma}: must be >= 0 (0 = no blur)")
        self.config = dataclasses.replace(self.config, decode_blur=float(sigma))

    def _final_heatmaps(self, images: Tensor) -> Tensor:
        """The network's final head, as probabilities if it was trained for detection."""
        out = torch.as_tensor(self.network(images)).float()
        size = self.config.codec.heatmap_size
        expected = (len(images), self.spec.num_keypoints, size, size)
        model = self.source or "the model"
        if tuple(out.shape) != expected:  # an exported file whose metadata does not describe its graph
            raise DunetError(f"{model}: the network gives heatmaps of shape {tuple(out.shape)}, but its "
                             f"metadata describes {expected} ({self.spec.num_keypoints} keypoints, "
                             f"{self.input_size} px input)")
        broken = int((~torch.isfinite(out).flatten(1).all(1)).sum())
        if broken:  # damaged weights, most likely: NaN scores must never leave as points
            raise DunetError(f"{model}: the network's heatmaps hold NaN or infinite values "
                             f"for {broken} of {len(out)} crop(s); the model is damaged (use an earlier checkpoint "
                             "or retrain)")
        return torch.sigmoid(out) if self.kinds[-1] == "detection" else out

    @torch.no_grad()
    def heatmaps(self, images: Tensor, flip: bool = False) -> Tensor:
        """(B, K, S/4, S/4) float32 heatmaps of the final head; `flip` averages with the mirrored input."""
        if flip and not self.spec.can_flip:
            raise DunetError(f"flip test needs left/right pairs, which the {self.spec.name!r} spec lacks")
        images = torch.as_tensor(images)
        out = self._final_heatmaps(images)
        if flip:
            mirrored = self._final_heatmaps(torch.flip(images, dims=[3]))
            mirrored = torch.flip(mirrored, dims=[3])[:, torch.as_tensor(self.spec.flip_index())]
            out = (out + mirrored) / 2
        return out.cpu()

    def predict_crops(self, images: Tensor, crop_to_image: Tensor | np.ndarray, flip: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (B, K, 2) in original-image pixels and their scores (B, K) from cropped inputs.

        The score of a landmark is its heatmap's peak value clipped to [0, 1]: a regression head is trained
        towards a Gaussian of height 1 at the landmark (so ~1 = a clear, typical peak, ~0 = no evidence),
        a detection head outputs probabilities already. It is not a calibrated probability of being right;
        `confidence_auc` measures how well it ranks good points above bad ones."""
        coords, peaks = self.config.codec.decode_to_image(self.heatmaps(images, flip=flip), crop_to_image)
        return coords, np.clip(peaks, 0.0, 1.0)

    def landmark_shift(self, other: "LandmarkModel", images: Tensor, batch: int = 8) -> np.ndarray:
        """(N, K) distances, in model-input pixels, from this model's landmarks to `other`'s on the same crops:
        how far a converted copy (int8, say) moves them. Plain decoding without blur, so only the networks differ."""
        codec = dataclasses.replace(self.config.codec, blur=0.0)
        shifts = []
        for first in range(0, len(images), batch):
            chunk = images[first: first + batch]
            mine, theirs = (codec.decode(model.heatmaps(chunk))[0] for model in (self, other))
            shifts.append(np.linalg.norm(mine - theirs, axis=-1))
        return np.concatenate(shifts)


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
    runtime installed (`fastest_backend`), converted once and cached (`dunet.engine.exported.cached_export`);
    a pretrained model that ships an OpenVINO int8 IR runs it whenever OpenVINO is the backend.
    threads: of the runtime, or of PyTorch on the CPU; 0 = every usable core that other work does not keep busy
    now (`free_cores`: a thread on a core another process holds stalls the others at every layer)."""
    from dunet.engine.hardware import capped_threads, free_cores

    if (checkpoint is None) == (model_name is None):
        raise DunetError("give either a CHECKPOINT path or --model NAME")
    if backend not in BACKENDS:
        raise DunetError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if threads < 0:
        raise DunetError(f"threads {threads}: must be >= 0 (0 = every usable core that other work leaves free)")
    if threads:
        threads, capped = capped_threads(threads)
        if capped:
            warnings.warn(capped, stacklevel=2)
    threads = threads or free_cores()
    runner = _runner_for(checkpoint, model_name, backend, precision, device, threads)
    if runner.backend != "torch":
        runner.threads = threads
    elif runner.network.device.type == "cpu":
        torch.set_num_threads(threads)  # PyTorch's thread count is the whole process's
        runner.threads = threads
    return runner


def _runner_for(checkpoint: str | None, model_name: str | None, backend: str, precision: str, device: str,
                threads: int) -> LandmarkModel:
    target = checkpoint or model_name
    suffix = Path(str(target)).suffix
    if backend in ("auto", "torch") and suffix in (".onnx", ".xml"):
        backend = "onnx" if suffix == ".onnx" else "openvino"
    if backend != "torch" and device not in ("auto", "cpu"):
        if backend != "auto":
            raise DunetError(f"--device {device}: the {backend} backend runs on the CPU; use --backend torch")
        backend = "torch"
    if model_name is not None:
        from dunet.engine.pretrained import pretrained_entry, resolve_pretrained, shipped_openvino_int8

        model_name = pretrained_entry(model_name)["name"]  # a task's name ("face") -> its default model
        target = resolve_pretrained(model_name)
        int8 = shipped_openvino_int8(model_name)
        runs_openvino = backend == "openvino" or (backend == "auto" and fastest_backend(device) == "openvino")
        if int8 is not None and runs_openvino:
            exported = LandmarkModel.load_exported(int8, "openvino", precision, threads)
            exported.source = model_name
            return exported
    if suffix in (".onnx", ".xml"):
        return LandmarkModel.load_exported(target, backend, precision, threads)
    auto = backend == "auto"
    if auto:
        backend = fastest_backend(device)
    runner = LandmarkModel.load(target, precision=precision, device=device if backend == "torch" else "cpu")
    if backend == "torch" or (auto and runner.config.model.quant != "none"):
        # Quantized models stay in PyTorch under auto: their training-time quantizers are what the
        # balance index and the packed file describe (int8 deployment is `dunet export --int8`).
        return runner
    from dunet.engine.exported import cached_export

    exported = LandmarkModel.load_exported(cached_export(runner), backend, precision, threads)
    exported.source = runner.source  # name the model the user gave, not the cache file
    return exported
