"""A landmark model ready to run: its model card and a network some backend runs. Crops in, landmarks out.

    model = load_model("face")                        # a pretrained name, a run, a model file, an .onnx / .xml
    coords, scores = model.predict_crops(crops, crop_to_image)

`load_model` is the one place that picks the backend and the file a backend runs; `LandmarkModel` does what
follows the network once for every backend: the sigmoid of a detection head, the flip test and the decoding
to image pixels. No PyTorch here: the torch backend's runner is on the training side (dunet.engine.inference).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.card import ModelCard, card_from_metadata, training_from_metadata
from dunet.runtime import backends, cpu

EXPORTED = (".onnx", ".xml")


class LandmarkModel:
    """A network (any runner: float (B, 3, S, S) batch -> the final head's raw heatmaps, with `backend` and
    `precision` attributes) and its model card. `training`: the training config the file carries, if any (a
    TrainConfig or its JSON): what `dunet eval` reads the held-out split from; inference never reads it."""

    def __init__(self, network, card: ModelCard, source: str = "", training=None):
        self.network = network
        self.card = card
        self.source = source
        self._training = training
        self.threads: int | None = None  # the CPU threads load_model gave it; None: not chosen (or a GPU)

    @property
    def spec(self):
        return self.card.spec

    @property
    def provenance(self) -> dict:
        return self.card.provenance

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def backend(self) -> str:
        return self.network.backend

    @property
    def precision(self) -> str:
        return self.network.precision

    @property
    def config(self):
        """The TrainConfig the model was trained with (the training side reads it)."""
        if self._training is None:
            raise DunetError(f"{self.source or 'the model'}: the file carries no training config (re-export it "
                             "from its checkpoint with this dunet)")
        if isinstance(self._training, dict):
            from dunet.engine.config import config_from_dict

            self._training = config_from_dict({k: v for k, v in self._training.items() if k != "spec"})
        return self._training

    @property
    def training(self) -> dict | None:
        """The training config as JSON, for the files this model exports (None if it carries none)."""
        if self._training is None or isinstance(self._training, dict):
            return self._training
        from dunet.engine.config import config_to_dict

        return config_to_dict(self._training)

    @property
    def model(self):
        """The PyTorch network (to export it, pack it or measure it): torch backend only."""
        if self.backend != "torch":
            raise DunetError(f"{self.source}: the {self.backend} backend runs no PyTorch network; load it with "
                             "backend torch")
        return self.network.model

    @property
    def name(self) -> str:
        m = self.card.network
        quant = f"-{m.quant}" if m.quant != "none" else ""
        where = f" [{self.backend}: {Path(self.source).name}]" if self.source else f" [{self.backend}]"
        return f"{m.arch}({m.units}){quant}{where}"

    def check_source(self, source) -> None:
        if source.spec.num_keypoints != self.spec.num_keypoints:
            raise DunetError(f"{self.source or 'the model'} predicts {self.spec.num_keypoints} landmarks "
                             f"({self.spec.name}) but {source.name} has {source.spec.num_keypoints}")

    def set_decode_blur(self, sigma: float | None) -> None:
        """Change the heatmap blur before sub-pixel decoding (None: keep the model's)."""
        if sigma is None:
            return
        if sigma < 0:
            raise DunetError(f"--decode-blur {sigma}: must be >= 0 (0 = no blur)")
        codec = dataclasses.replace(self.card.codec, blur=float(sigma))
        self.card = dataclasses.replace(self.card, codec=codec)

    def _final_heatmaps(self, images: np.ndarray) -> np.ndarray:
        """The network's final head, as probabilities if it was trained for detection."""
        out = np.asarray(self.network(images), dtype=np.float32)
        size = self.card.codec.heatmap_size
        expected = (len(images), self.spec.num_keypoints, size, size)
        model = self.source or "the model"
        if out.shape != expected:  # an exported file whose card does not describe its graph
            raise DunetError(f"{model}: the network gives heatmaps of shape {out.shape}, but its model card "
                             f"describes {expected} ({self.spec.num_keypoints} keypoints, {self.input_size} px input)")
        broken = int((~np.isfinite(out.reshape(len(out), -1)).all(1)).sum())
        if broken:  # damaged weights, most likely: NaN scores must never leave as points
            raise DunetError(f"{model}: the network's heatmaps hold NaN or infinite values for {broken} of {len(out)} "
                             "crop(s); the model is damaged (use an earlier checkpoint or retrain)")
        return 1.0 / (1.0 + np.exp(-out)) if self.card.final_head == "detection" else out

    def heatmaps(self, images, flip: bool = False) -> np.ndarray:
        """(B, K, S/4, S/4) float32 heatmaps of the final head; `flip` averages with the mirrored input."""
        if flip and not self.spec.can_flip:
            raise DunetError(f"flip test needs left/right pairs, which the {self.spec.name!r} spec lacks")
        images = backends.as_batch(images, None, self.source or "the model")
        out = self._final_heatmaps(images)
        if flip:
            mirrored = self._final_heatmaps(np.ascontiguousarray(images[..., ::-1]))
            out = (out + mirrored[..., ::-1][:, self.spec.flip_index()]) / 2
        return out

    def predict_crops(self, images, crop_to_image, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (B, K, 2) in original-image pixels and their scores (B, K) from cropped inputs.

        The score of a landmark is its heatmap's peak value clipped to [0, 1]: a regression head is trained
        towards a Gaussian of height 1 at the landmark (so ~1 = a clear, typical peak, ~0 = no evidence),
        a detection head outputs probabilities already. It is not a calibrated probability of being right;
        `dunet.metrics.confidence_auc` measures how well it ranks good points above bad ones."""
        coords, peaks = self.card.codec.decode_to_image(self.heatmaps(images, flip=flip), crop_to_image)
        return coords, np.clip(peaks, 0.0, 1.0)

    def landmark_shift(self, other: LandmarkModel, images, batch: int = 8) -> np.ndarray:
        """(N, K) distances, in model-input pixels, from this model's landmarks to `other`'s on the same crops:
        how far a converted copy (int8, say) moves them. Plain decoding without blur, so only the networks differ."""
        codec = dataclasses.replace(self.card.codec, blur=0.0)
        shifts = []
        for first in range(0, len(images), batch):
            chunk = images[first: first + batch]
            mine, theirs = (codec.decode(model.heatmaps(chunk))[0] for model in (self, other))
            shifts.append(np.linalg.norm(mine - theirs, axis=-1))
        return np.concatenate(shifts)


def load_model(target: str | Path, *, backend: str = "auto", precision: str = "auto", device: str = "auto",
               threads: int = 0) -> LandmarkModel:
    """The model `target` names: a pretrained name (`dunet models`; "face" and "pose" are each task's default), a
    run or checkpoint directory, a `.safetensors` or packed model file, or an exported `.onnx` / `.xml` file.

    backend "auto": the fastest installed (`backends.fastest`): OpenVINO builds the network of a model file
    from its weights, and runs a pretrained model's shipped int8 IR where there is one and the CPU does not
    compute bf16 natively (`_runs_int8`). "torch" runs the
    PyTorch network (on `device`: "auto", "cpu", "cuda" or "cuda:N"); "onnx" an ONNX file (a model file is
    exported once and cached, which needs PyTorch). precision: "auto" (bf16 where the CPU computes it
    natively), "fp32" or "bf16". threads: of the runtime, or of PyTorch on the CPU; 0 = every usable core that
    other work does not keep busy now (a thread on a core another process holds stalls the others)."""
    backends.check_choice(backend)
    if threads < 0:
        raise DunetError(f"threads {threads}: must be >= 0 (0 = every usable core that other work leaves free)")
    if threads:
        threads, capped = cpu.capped_threads(threads)
        if capped:
            warnings.warn(capped, stacklevel=2)
    threads = threads or cpu.free_cores()
    path, int8, name = _resolve(str(target))
    if device not in ("auto", "cpu") and backend not in ("auto", "torch"):
        raise DunetError(f"--device {device}: the {backend} backend runs on the CPU; use --backend torch")
    if backend == "auto":
        backend = backends.fastest(device)
    if path.suffix in EXPORTED:
        if backend == "torch":  # an exported file has no PyTorch network: its own runtime runs it
            backend = "onnx" if path.suffix == ".onnx" and not backends.installed("openvino") else "openvino"
        model = _load_exported(path, backend, precision, threads)
    elif backend == "openvino" and int8 is not None and _runs_int8(precision):
        model = _load_exported(int8, "openvino", precision, threads)
    elif backend == "openvino":
        model = _load_built(path, precision, threads)
    else:
        model = _load_torch(path, backend, precision, device, threads)
    if name is not None:
        model.source = name  # the model the user named, not its file
    return model


def _runs_int8(precision: str) -> bool:
    """Whether OpenVINO runs a pretrained model's int8 IR rather than the network built from its weights: unless
    the network runs in bf16 (asked, or auto on a CPU that computes it natively), which keeps the float model's
    accuracy at about the int8 IR's speed; without native bf16, fp32 takes about twice the int8 IR's time
    (measured in docs/api.md, "Backends")."""
    return not (precision == "bf16" or (precision == "auto" and cpu.native_bf16()[0]))


def _resolve(target: str) -> tuple[Path, Path | None, str | None]:
    """The file `target` names, the int8 IR shipped with it and its name if it is a pretrained name."""
    from dunet.runtime.pretrained import is_pretrained_name, pretrained_entry, resolve_pretrained, shipped_openvino_int8

    if not is_pretrained_name(target):
        return Path(target), None, None
    name = pretrained_entry(target)["name"]  # a task's name ("face") -> its default model
    return resolve_pretrained(name), shipped_openvino_int8(name), name


def _load_exported(path: Path, backend: str, precision: str, threads: int) -> LandmarkModel:
    """An ONNX file or OpenVINO IR, run by onnxruntime or OpenVINO on the CPU."""
    precision, _ = cpu.choose_precision(precision)
    if backend == "openvino":
        from dunet.runtime.openvino import OpenVinoPredictor

        # Batches on 2 streams: ~8 % faster.
        network = OpenVinoPredictor(path, precision, threads=threads, streams=min(2, threads))
    elif path.suffix == ".xml":
        raise DunetError(f"{path}: an OpenVINO IR runs with --backend openvino")
    else:
        from dunet.runtime.onnxruntime import OnnxPredictor

        network = OnnxPredictor(path, threads=threads)
    return _with_card(network, network.metadata, path, threads)


def _with_card(network, metadata: dict[str, str], path: Path, threads: int) -> LandmarkModel:
    model = LandmarkModel(network, card_from_metadata(metadata, str(path)), str(path),
                          training_from_metadata(metadata, str(path)))
    model.threads = threads
    return model


def _load_built(path: Path, precision: str, threads: int) -> LandmarkModel:
    """A model file (weights and card) whose network OpenVINO builds from the weights, no PyTorch involved. A
    model the graph builder does not cover (an architecture or quantization only PyTorch runs) is exported once
    through PyTorch instead, when PyTorch is installed."""
    from dunet.quant.packing import FORMAT as PACKED
    from dunet.runtime.graph import build_network
    from dunet.runtime.openvino import OpenVinoPredictor
    from dunet.runtime.weights import read_weights, resolve

    path = resolve(path)  # a run directory: its best checkpoint, named as such
    metadata, weights = read_weights(path)
    card = card_from_metadata(metadata, str(path))
    try:
        # A packed file's weights are the quantized values the network computes with.
        network = build_network(card.network, weights, quantized_weights_baked=metadata.get("format") == PACKED)
    except DunetError:
        if not backends.installed("torch"):
            raise
        return _load_torch(path, "openvino", precision, "cpu", threads)
    precision, _ = cpu.choose_precision(precision)
    runner = OpenVinoPredictor(path, precision, threads=threads, streams=min(2, threads), network=network,
                               metadata=metadata)
    return _with_card(runner, metadata, path, threads)


def _load_torch(path: Path, backend: str, precision: str, device: str, threads: int) -> LandmarkModel:
    """The PyTorch network of a model file, run by PyTorch (backend torch), or exported once to ONNX and run by
    onnxruntime or OpenVINO (the file cached: dunet.engine.exported)."""
    if backend != "torch" and not backends.installed("torch"):
        raise DunetError(f"{path}: onnxruntime runs ONNX files, and a model file becomes one through PyTorch: "
                         f"{backends.BACKENDS['torch'].install}, or run it with backend openvino (the default)")
    backends.require("torch")
    from dunet.engine.inference import load_torch_model

    model = load_torch_model(path, precision=precision, device=device if backend == "torch" else "cpu")
    if backend == "torch":
        if model.network.device.type == "cpu":
            import torch

            torch.set_num_threads(threads)  # PyTorch's thread count is the whole process's
            model.threads = threads
        return model
    from dunet.engine.exported import cached_export

    exported = _load_exported(cached_export(model), backend, precision, threads)
    exported.source = model.source  # name the model the user gave, not the cache file
    return exported
