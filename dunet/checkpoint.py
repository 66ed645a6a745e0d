"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory (a run keeps `RUN/last/` and `RUN/best/`):

    model.safetensors        weights, and in its metadata the model card (dunet.card) and the training config
                             (`dunet_training`): a model on its own
    card.json                the same card, to read
    train_state.safetensors  tensors of the training state: optimizer state ("optimizer.state.<param>.<key>"),
    train_state.json         torch RNG state, ...; the JSON holds the rest and marks where each tensor goes.
                             Both absent in exported / pretrained models.

A shipped model is one file: any `NAME.safetensors` whose metadata holds the format marker and a model card.
Its convolution weights may be stored as int8 with one float32 scale per output channel (`int8_weights`,
tensor `NAME` int8 plus `NAME.int8_scale`): a quarter of float32, dequantized when loaded.

Writes go to a temporary sibling that is fsynced and then renamed over the target, keeping the old
copy as `.NAME.old` until the new one is in place, so a crash never leaves a half-written checkpoint;
loading falls back to `.NAME.old` when a crash happened between the two renames.
Nothing here ever unpickles: no torch.load, no pickle.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from dunet import DunetError, files
from dunet.card import TRAINING_KEY, ModelCard, card_from_metadata, training_from_metadata
from dunet.files import atomic_write_file, sibling
from dunet.quant.quantizers import int8_per_channel
from dunet.runtime.weights import (  # the file format facts, shared with the PyTorch-free reader
    FORMAT, FORMAT_VERSION, INT8_SCALE_SUFFIX, MODEL_FILE, read_model_file, read_safetensors, resolve,
)

CARD_FILE = "card.json"
TRAIN_TENSORS_FILE = "train_state.safetensors"
TRAIN_JSON_FILE = "train_state.json"

# Markers the JSON structure uses for values JSON cannot hold.
_TENSOR, _NDARRAY, _TUPLE, _INT_KEYS = "__tensor__", "__ndarray__", "__tuple__", "__int_keys__"
_MARKERS = (_TENSOR, _NDARRAY, _TUPLE, _INT_KEYS)


@dataclass
class Checkpoint:
    path: Path  # what was loaded: a checkpoint directory or a single .safetensors file
    state_dict: dict[str, Tensor]
    card: ModelCard
    config: Any = None  # the TrainConfig it was trained with (dunet.engine.config), None if the file holds none
    train_state: dict | None = None  # epoch, step, best metric, "rng" (see capture_rng), ...
    optimizer_state: dict | None = None  # a torch optimizer state_dict
    optimizer_type: str | None = None  # class name of the optimizer that wrote it


# ---------------------------------------------------------------------------------------------
# saving


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard, *, config=None,
                    optimizer: torch.optim.Optimizer | None = None, train_state: dict | None = None,
                    metrics: dict | None = None, int8_weights: bool = False) -> Path:
    """Write a checkpoint directory at `path`, or a single-file model if `path` ends in `.safetensors`.

    `config`: the TrainConfig (or its JSON dict) it was trained with, kept beside the card for `--resume`, `--init`
    and eval's held-out split. `metrics`: the held-out metrics now, kept in the card's provenance. With `train_state` or `optimizer`, the
    training state is stored too; the RNG states of python, numpy and torch are captured into
    `train_state["rng"]` unless it is already there. `int8_weights` (single-file models only) stores every
    conv weight as int8 with a scale per output channel."""
    path = Path(path)
    written = {"torch_version": torch.__version__, **({} if metrics is None else {"metrics": dict(metrics)})}
    card = card.stamped(**written)
    if int8_weights and path.suffix != ".safetensors":
        raise ValueError("int8 weights are for single-file models (a .safetensors path), not training checkpoints")
    model_file = _model_file_bytes(model, card, config, int8_weights)
    if path.suffix == ".safetensors":
        if optimizer is not None or train_state is not None:
            raise ValueError("a single-file model holds weights only; save training state to a checkpoint directory")
        atomic_write_file(path, model_file)
        return path

    contents = {MODEL_FILE: model_file, CARD_FILE: _json_bytes(card.to_dict())}
    if optimizer is not None or train_state is not None:
        state = dict(train_state or {})
        state.setdefault("rng", capture_rng())
        tensors: dict[str, Tensor] = {}
        structure: dict[str, Any] = {"train": _encode(state, "train", tensors)}
        if optimizer is not None:
            structure["optimizer_type"] = type(optimizer).__name__
            structure["optimizer"] = _encode(optimizer.state_dict(), "optimizer", tensors)
        contents[TRAIN_TENSORS_FILE] = safetensors_bytes(tensors)
        contents[TRAIN_JSON_FILE] = _json_bytes(structure)
    _atomic_write_dir(path, contents)
    return path


def training_metadata(config) -> dict[str, str]:
    """The training config as model-file metadata (beside the card), or nothing for None."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        from dunet.engine.config import config_to_dict

        config = config_to_dict(config)
    return {TRAINING_KEY: json.dumps(config)}


def _model_file_bytes(model: nn.Module, card: ModelCard, config, int8_weights: bool = False) -> bytes:
    # Cloning gives every tensor its own storage: safetensors refuses tensors that share memory.
    weights = {name: t.detach().cpu().clone(memory_format=torch.contiguous_format)
               for name, t in model.state_dict().items()}
    if int8_weights:
        for name in [n for n, t in weights.items() if t.is_floating_point() and t.dim() == 4]:
            weights[name], weights[name + INT8_SCALE_SUFFIX] = int8_per_channel(weights[name])
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), **card.to_metadata(),
                **training_metadata(config)}
    return safetensors_bytes(weights, metadata=metadata)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in checkpoint JSON")


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, default=_json_default) + "\n").encode()


def _encode(value: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    """JSON structure of `value`; tensors and arrays go into `tensors` under their path ("optimizer.state.0.exp_avg")."""
    if isinstance(value, (Tensor, np.ndarray)):
        if name in tensors:  # keys with dots could collide; the marker keeps the real name anyway
            name = f"{name}#{len(tensors)}"
        if isinstance(value, Tensor):
            tensors[name] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
            return {_TENSOR: name}
        tensors[name] = torch.from_numpy(np.array(value, copy=True, order="C"))
        return {_NDARRAY: name}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            clash = [k for k in value if k in _MARKERS]
            if clash:
                raise ValueError(f"{name}: the key {clash[0]!r} is reserved")
            return {k: _encode(v, f"{name}.{k}", tensors) for k, v in value.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {_INT_KEYS: {str(k): _encode(v, f"{name}.{k}", tensors) for k, v in value.items()}}
        raise TypeError(f"{name}: dict keys must be all strings or all integers")
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{name}: cannot store a {type(value).__name__} in a checkpoint "
                    "(use numbers, strings, lists, tuples, dicts, tensors or numpy arrays)")


# ---------------------------------------------------------------------------------------------
# atomic writes


def _atomic_write_dir(target: Path, contents: dict[str, bytes]) -> None:
    tmp, old = sibling(target, "tmp"), sibling(target, "old")
    if target.is_file() or (target.is_dir() and any(target.iterdir()) and not (target / MODEL_FILE).is_file()):
        raise DunetError(f"{target}: exists and is not a dunet checkpoint; refusing to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # left behind by a save that crashed
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, data in contents.items():
            files.write_synced(tmp / name, data)
        files.fsync_dir(tmp)
        # Keep the old checkpoint until the new one is in place. If `target` is missing while `old`
        # exists, an earlier save crashed between the renames and `old` is the last good copy.
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        files.fsync_dir(target.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DunetError(f"{target}: cannot write the checkpoint ({err.strerror or err})") from None
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# loading


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint directory, a run directory (its best/, else last/) or a single .safetensors model."""
    resolved = resolve(Path(path))
    if resolved.is_file():
        return _load_file(resolved)
    return _load_dir(resolved)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DunetError(f"{path}: file not found; the checkpoint is incomplete") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DunetError(f"{path}: corrupt JSON ({err})") from None


def _load_file(path: Path) -> Checkpoint:
    metadata, arrays = read_model_file(path)
    card = card_from_metadata(metadata, str(path))
    state_dict = {name: torch.from_numpy(a) for name, a in arrays.items()}
    return Checkpoint(path=path, state_dict=state_dict, card=card, config=read_training(metadata, path))


def read_training(metadata: dict[str, str], path: Path):
    """The TrainConfig a model file carries beside its card, or None."""
    from dunet.engine.config import config_from_dict

    data = training_from_metadata(metadata, str(path))
    if data is None:
        return None
    try:
        return config_from_dict({k: v for k, v in data.items() if k != "spec"})  # dunet 0.1.0 kept the spec in it
    except DunetError as err:
        raise DunetError(f"{path}: its training config is not one this dunet reads ({err})") from None


def _load_dir(path: Path) -> Checkpoint:
    ckpt = _load_file(path / MODEL_FILE)  # its metadata holds the card (and the config and meta of 0.1.0)
    ckpt.path = path
    has_json, has_tensors = (path / TRAIN_JSON_FILE).is_file(), (path / TRAIN_TENSORS_FILE).is_file()
    if has_json != has_tensors:
        missing = TRAIN_TENSORS_FILE if has_json else TRAIN_JSON_FILE
        raise DunetError(f"{path}: incomplete training state ({missing} is missing)")
    if has_json:
        structure = _read_json(path / TRAIN_JSON_FILE)
        tensors, _ = read_safetensors(path / TRAIN_TENSORS_FILE, framework="pt")
        if not isinstance(structure, dict) or "train" not in structure:
            raise DunetError(f"{path / TRAIN_JSON_FILE}: not a dunet training state")
        where = path / TRAIN_JSON_FILE
        ckpt.train_state = _decode(structure["train"], tensors, where)
        if "optimizer" in structure:
            ckpt.optimizer_state = _decode(structure["optimizer"], tensors, where)
            ckpt.optimizer_type = structure.get("optimizer_type")
    return ckpt


def _decode(value: Any, tensors: dict[str, Tensor], where: Path) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, inner), = value.items()
        if key in (_TENSOR, _NDARRAY):
            if inner not in tensors:
                raise DunetError(f"{where}: refers to tensor {inner!r}, which the training-state file lacks")
            return tensors[inner] if key == _TENSOR else tensors[inner].numpy()
        if key == _TUPLE:
            return tuple(_decode(v, tensors, where) for v in inner)
        if key == _INT_KEYS:
            return {int(k): _decode(v, tensors, where) for k, v in inner.items()}
    return {k: _decode(v, tensors, where) for k, v in value.items()}


# ---------------------------------------------------------------------------------------------
# restoring


def load_weights(model: nn.Module, ckpt: Checkpoint | str | Path) -> Checkpoint:
    """Copy the checkpoint's weights into `model` after checking that every tensor name and shape fits."""
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    expected = model.state_dict()
    given = ckpt.state_dict
    problem = f"{ckpt.path} does not fit this model"
    hint = _describe_model(ckpt.card)
    for name, tensor in expected.items():
        if name not in given:
            raise DunetError(f"{problem}: the checkpoint has no tensor {name!r} (wrong architecture?){hint}")
        if given[name].shape != tensor.shape:
            raise DunetError(f"{problem}: tensor {name!r} has shape {tuple(given[name].shape)} in the checkpoint "
                             f"but {tuple(tensor.shape)} in the model (wrong architecture or landmark count?){hint}")
    extra = [name for name in given if name not in expected]
    if extra:
        raise DunetError(f"{problem}: the checkpoint has {len(extra)} tensor(s) the model lacks, "
                         f"first {extra[0]!r} (wrong architecture?){hint}")
    model.load_state_dict(given, strict=True)
    return ckpt


def init_weights(model: nn.Module, ckpt: Checkpoint | str | Path) -> tuple[list[str], list[str]]:
    """Copy into `model` every checkpoint tensor whose name and shape fit (fine-tuning, e.g. onto another
    landmark count); the others keep their values. Returns (copied, kept) tensor names."""
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    state = model.state_dict()
    given = ckpt.state_dict
    # Float tensors only: BN's integer batch counters are scalars that "fit" any model.
    copied = [name for name, tensor in state.items()
              if tensor.is_floating_point() and name in given and given[name].shape == tensor.shape]
    if not copied:
        raise DunetError(f"{ckpt.path}: no tensor fits this model (another architecture?){_describe_model(ckpt.card)}")
    model.load_state_dict({**state, **{name: given[name].to(state[name].dtype) for name in copied}})
    return copied, [name for name in state if name not in set(copied)]


def _describe_model(card: ModelCard) -> str:
    model = card.network
    keys = ("arch", "units", "order", "landmarks", "input_size", "quant")
    return "; checkpoint model: " + ", ".join(f"{k}={getattr(model, k)}" for k in keys)


def restore_optimizer(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    """Load the saved optimizer state into `optimizer` (built over the same parameters, in the same order)."""
    if ckpt.optimizer_state is None:
        raise DunetError(f"{ckpt.path}: no optimizer state (exported and pretrained models have none)")
    kind = type(optimizer).__name__
    if ckpt.optimizer_type is not None and ckpt.optimizer_type != kind:
        raise DunetError(f"{ckpt.path}: the optimizer state is from {ckpt.optimizer_type}, not {kind}")
    try:
        optimizer.load_state_dict(ckpt.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as err:
        raise DunetError(f"{ckpt.path}: the optimizer state does not fit this optimizer ({err})") from None


def capture_rng() -> dict:
    """RNG states of python, numpy (global) and torch: lists and numbers, plus torch's uint8 tensor(s)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of capture_rng (also accepts the state after a JSON round trip: lists for tuples)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["bit_generator"], np.asarray(np_state["keys"], dtype=np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in state["cuda"]])
