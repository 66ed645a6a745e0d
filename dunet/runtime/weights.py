"""The weights of any dunet model file as numpy arrays, without PyTorch.

A model file is one of (dunet.checkpoint describes the first two, dunet.quant.packing the last):

    NAME.safetensors          a single-file model; conv weights may be int8 codes `NAME` with a float32 scale
                              per output channel `NAME.int8_scale`
    DIR/                      a checkpoint directory (its model.safetensors) or a run directory (its best/,
                              else last/); `.DIR.old` stands in for DIR after a save crashed between its renames
    NAME.packed.safetensors   a packed file: binary or ternary weights at 1 or 2 bits, BN folded where it
                              feeds a quantized convolution

This module is where these facts live; dunet.checkpoint writes and loads the same files for PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from dunet import DunetError
from dunet.files import sibling
from dunet.quant.packing import is_packed_file, read_packed

FORMAT = "dunet-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
RUN_SUBDIRS = ("best", "last")  # what a run directory resolves to, in order of preference
INT8_SCALE_SUFFIX = ".int8_scale"


def read_weights(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, float32 state dict) of a model file, directory or packed file (see the module docstring).
    Integer buffers (BN's num_batches_tracked) keep their dtype."""
    path = Path(path)
    if path.is_file() and is_packed_file(path):
        return read_packed(path)
    resolved = resolve(path)
    return read_model_file(resolved if resolved.is_file() else resolved / MODEL_FILE)


def resolve(path: Path) -> Path:
    """The model file or checkpoint directory that `path` names (see the module docstring)."""
    if not path.exists():
        old = sibling(path, "old")
        if (old / MODEL_FILE).is_file():  # a save crashed between its two renames
            return old
        raise DunetError(f"{path}: no such checkpoint (file or directory not found)")
    if path.is_file() or (path / MODEL_FILE).is_file():
        return path
    for sub in RUN_SUBDIRS:
        if (path / sub).exists() or (sibling(path / sub, "old") / MODEL_FILE).is_file():
            return resolve(path / sub)
    raise DunetError(f"{path}: not a dunet checkpoint (expected {MODEL_FILE} in it, "
                     f"or a run directory with {' or '.join(s + '/' for s in RUN_SUBDIRS)})")


def read_model_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, state dict) of one model .safetensors file: format checked, int8 weights dequantized."""
    tensors, metadata = read_safetensors(path)
    check_format(metadata, path)
    return metadata, check_finite(dequantize_int8(tensors, path), path)


def read_safetensors(path: Path, framework: str = "numpy") -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a damaged file is a DunetError naming it."""
    try:
        with safe_open(str(path), framework=framework, device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise DunetError(f"{path}: file not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DunetError(f"{path}: corrupt or truncated safetensors file ({reason})") from None
    return tensors, metadata


def check_format(metadata: dict[str, str], path: Path) -> None:
    if metadata.get("format") != FORMAT:
        raise DunetError(f"{path}: a safetensors file but not a dunet model (no '{FORMAT}' format marker)")
    try:
        version = int(metadata.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version < 1:
        raise DunetError(f"{path}: unknown checkpoint format version {metadata.get('format_version')!r}")
    if version > FORMAT_VERSION:
        raise DunetError(f"{path}: written by a newer dunet (format {version}, this one reads {FORMAT_VERSION}); "
                         "upgrade dunet")


def dequantize_int8(state: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """`state` with each int8 weight `NAME` and its `NAME.int8_scale` replaced by float32 codes * scale."""
    out = {k: v for k, v in state.items() if not k.endswith(INT8_SCALE_SUFFIX)}
    for key in [k for k in state if k.endswith(INT8_SCALE_SUFFIX)]:
        name = key.removesuffix(INT8_SCALE_SUFFIX)
        codes, scale = out.get(name), state[key]
        if codes is None or codes.dtype != np.int8 or scale.ndim != 1 or scale.size != codes.shape[0]:
            raise DunetError(f"{path}: damaged int8 weight {name!r} (codes or scale missing or mismatched)")
        out[name] = codes.astype(np.float32) * scale.astype(np.float32).reshape(-1, *[1] * (codes.ndim - 1))
    return out


def check_finite(state: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """`state`, or a DunetError naming its tensors that hold NaN or infinity: such a model predicts every
    point at one place with a score of NaN, and eval would print a number as if it were real."""
    bad = [name for name, a in state.items() if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DunetError(f"{path}: damaged weights: tensor(s) {shown} hold NaN or infinite values; use an earlier "
                         "checkpoint or retrain")
    return state
