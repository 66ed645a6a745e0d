"""Packed model files: binary weights at 1 bit, ternary at 2 bits per weight.

A packed file is a safetensors file (no pickle) with three tensors and JSON metadata:

    bits     uint8    the bit planes of every quantized convolution, one after another: binary weights
                      as one plane (1 = +1, 0 = -1), ternary as two (non-zero, negative); np.packbits order
    floats   float32  everything else, one after another: alpha per output filter, BN, biases, the
                      full-precision first and last layers
    layout   uint8    zlib-compressed JSON: for each state-dict entry, in order, its key, shape and how
                      it is stored (kind), so that the file decodes without building the model

    metadata: format = "dunet-packed", format_version, and the strings given to save_packed (the model card)

A BN that feeds a quantized convolution (a module's `norm` beside its QConv2d `conv`, run through
`bn_relu_conv`) is stored folded, as its eval-mode scale and shift per channel: 2 floats instead of 4.
Loading gives back a state dict for the same architecture whose quantized weights, folded BN and
everything else are exactly those of the saved model, so eval outputs are bit-identical: latent
weights are restored as sign * alpha (or the ternary value * alpha), which the weight quantizer maps
back to exactly the same values (alpha is summed in float64, see quantizers.binary_alpha), and BN as
weight = scale, bias = shift, running mean 0 and a running variance with rsqrt(var + eps) == 1.
Packed files are for inference: the latent weights and BN statistics of training are not kept.
Reading needs numpy only (`read_packed`); PyTorch is imported by the writing functions and `load_packed`.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as safetensors_load

from dunet import DunetError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from dunet.quant.layers import QConv2d

FORMAT = "dunet-packed"
FORMAT_VERSION = 1
# Non-float buffers (num_batches_tracked) are kept as JSON numbers, with one of these dtypes (torch's names).
_VALUE_DTYPES = {f"torch.{t}": np.dtype(t) for t in ("int64", "int32", "int16", "int8", "uint8", "bool")}


# ---------------------------------------------------------------------------------------------
# writing


class _Writer:
    def __init__(self) -> None:
        self.bits: list[np.ndarray] = []
        self.floats: list[np.ndarray] = []
        self.layout: list[dict] = []

    def float_entry(self, key: str, value: Tensor, kind: str = "float") -> None:
        self.floats.append(value.detach().cpu().float().reshape(-1).numpy())
        self.layout.append({"key": key, "kind": kind, "shape": list(value.shape)})

    def value_entry(self, key: str, value: Tensor) -> None:
        """A non-float buffer (num_batches_tracked): small, kept in the JSON layout."""
        self.layout.append({"key": key, "kind": "value", "shape": list(value.shape), "dtype": str(value.dtype),
                            "value": value.detach().cpu().reshape(-1).tolist()})

    def fill_entry(self, key: str, shape: torch.Size, fill: float) -> None:
        self.layout.append({"key": key, "kind": "fill", "shape": list(shape), "value": fill})

    def conv_entry(self, key: str, conv: QConv2d) -> None:
        from dunet.quant.quantizers import weight_levels

        weight, spec = conv.weight.detach().cpu(), conv.spec
        entry = {"key": key, "kind": spec.weights, "shape": list(weight.shape), "alpha": spec.alpha}
        levels, alpha = weight_levels(weight, spec)
        levels = levels.reshape(-1).numpy()
        if spec.weights == "binary":
            self.bits.append(np.packbits(levels > 0))
        else:
            self.bits += [np.packbits(levels != 0), np.packbits(levels < 0)]
        if alpha is not None:
            self.floats.append(alpha.float().reshape(-1).numpy())
        self.layout.append(entry)

    def to_bytes(self, metadata: dict[str, str]) -> bytes:
        import torch
        from safetensors.torch import save as safetensors_bytes

        layout = zlib.compress(json.dumps(self.layout, separators=(",", ":")).encode(), 9)
        tensors = {
            "bits": torch.from_numpy(np.concatenate(self.bits) if self.bits else np.zeros(0, np.uint8)),
            "floats": torch.from_numpy(np.concatenate(self.floats) if self.floats else np.zeros(0, np.float32)),
            "layout": torch.frombuffer(bytearray(layout), dtype=torch.uint8),
        }
        metadata = {**metadata, "format": FORMAT, "format_version": str(FORMAT_VERSION)}
        return safetensors_bytes(tensors, metadata=metadata)


def folded_norms(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """BN layers stored folded: the `norm` of a module whose `conv` is a QConv2d (a BN-ReLU-QConv
    unit that runs through bn_relu_conv), by state-dict prefix."""
    from torch import nn

    from dunet.quant.layers import QConv2d

    found = {}
    for name, module in model.named_modules():
        norm, conv = getattr(module, "norm", None), getattr(module, "conv", None)
        if isinstance(norm, nn.BatchNorm2d) and isinstance(conv, QConv2d) and norm.affine and norm.track_running_stats:
            found[f"{name}.norm." if name else "norm."] = norm
    return found


def unit_variance_fill(eps: float) -> float:
    """A float32 running variance v with rsqrt(v + eps) == 1 exactly, as folded_batch_norm computes it."""
    import torch

    v = torch.tensor(1.0 - eps, dtype=torch.float32)
    for _ in range(64):
        out = torch.rsqrt(v + eps).item()
        if out == 1.0:
            return v.item()
        v = torch.nextafter(v, torch.tensor(2.0 if out > 1.0 else 0.0))
    raise RuntimeError(f"no float32 variance gives rsqrt(v + {eps}) == 1")


def pack_state_dict(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """The packed file of `model` (see the module docstring) with `metadata`, as bytes."""
    import torch

    from dunet.quant.layers import QConv2d, folded_batch_norm

    writer = _Writer()
    convs = {f"{name}.weight": m for name, m in model.named_modules() if isinstance(m, QConv2d)}
    norms = folded_norms(model)
    folded: dict[str, Tensor] = {}
    for prefix, norm in norms.items():
        with torch.no_grad():
            scale, shift = folded_batch_norm(norm)
        folded.update({prefix + "weight": scale, prefix + "bias": shift})
    for key, value in model.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        prefix += "."
        if key in convs and convs[key].spec.weights != "fp":
            writer.conv_entry(key, convs[key])
        elif key in folded:
            writer.float_entry(key, folded[key], kind="folded")
        elif prefix in norms and leaf == "running_mean":
            writer.fill_entry(key, value.shape, 0.0)
        elif prefix in norms and leaf == "running_var":
            writer.fill_entry(key, value.shape, unit_variance_fill(norms[prefix].eps))
        elif value.is_floating_point():
            writer.float_entry(key, value)
        else:
            writer.value_entry(key, value)
    return writer.to_bytes(metadata or {})


def packed_size_bytes(model: nn.Module) -> int:
    """Bytes of the packed file of `model` (without metadata)."""
    return len(pack_state_dict(model))


def save_packed(model: nn.Module, metadata: dict[str, str], path: str | Path) -> Path:
    """Write the packed file of `model` with `metadata` (strings: the model card's) to `path`."""
    path = Path(path)
    data = pack_state_dict(model, metadata)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise DunetError(f"{path}: cannot write the packed model: {err.strerror or err}") from None
    return path


# ---------------------------------------------------------------------------------------------
# reading


def is_packed_file(path: str | Path) -> bool:
    """True if `path` is a readable packed model file."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except (OSError, SafetensorError, ValueError):
        return False


def load_packed(path: str | Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    """Read a packed file: (its metadata, a state dict for the same architecture)."""
    import torch

    metadata, state = read_packed(path)
    return metadata, {key: torch.from_numpy(value) for key, value in state.items()}


def read_packed(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Read a packed file without PyTorch: (its metadata, the state dict as numpy arrays)."""
    from dunet.runtime.weights import check_finite  # that module reads packed files with this one

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DunetError(f"{path}: cannot read the packed model: {err.strerror or err}") from None
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError) as err:
        raise DunetError(f"{path}: not a safetensors file ({err})") from None
    if metadata.get("format") != FORMAT:
        raise DunetError(f"{path}: not a packed dunet model (format {metadata.get('format')!r}, expected {FORMAT!r})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise DunetError(f"{path}: packed format version {metadata.get('format_version')} is not supported "
                         f"(this dunet reads version {FORMAT_VERSION})")
    try:
        layout = json.loads(zlib.decompress(tensors["layout"].tobytes()))
        state = _decode(layout, tensors["bits"], tensors["floats"].astype(np.float32, copy=False))
    except (KeyError, ValueError, TypeError, zlib.error) as err:
        raise DunetError(f"{path}: damaged packed model ({type(err).__name__}: {err})") from None
    return metadata, check_finite(state, path)


def _decode(layout: list[dict], bits: np.ndarray, floats: np.ndarray) -> dict[str, np.ndarray]:
    state: dict[str, np.ndarray] = {}
    bit_pos = float_pos = 0

    def take_floats(count: int) -> np.ndarray:
        nonlocal float_pos
        if float_pos + count > floats.size:
            raise ValueError("float data ends early")
        out = floats[float_pos: float_pos + count].copy()
        float_pos += count
        return out

    def take_plane(count: int) -> np.ndarray:
        nonlocal bit_pos
        size = (count + 7) // 8
        if bit_pos + size > bits.size:
            raise ValueError("bit data ends early")
        plane = np.unpackbits(bits[bit_pos: bit_pos + size], count=count).astype(bool)
        bit_pos += size
        return plane

    for entry in layout:
        try:
            state[entry["key"]] = _decode_entry(entry, take_floats, take_plane)
        except ValueError as err:  # name the tensor whose data is missing or wrong
            raise ValueError(f"tensor {entry.get('key')!r}: {err}") from None
    if bit_pos != bits.size or float_pos != floats.size:
        raise ValueError("data left over after the last entry")
    return state


def _decode_entry(entry: dict, take_floats, take_plane) -> np.ndarray:
    """One tensor of the layout, its bits and floats taken from the streams in file order."""
    shape = tuple(entry["shape"])
    count = math.prod(shape)
    kind = entry["kind"]
    if kind in ("float", "folded"):
        value = take_floats(count).reshape(shape)
    elif kind == "fill":
        value = np.full(shape, entry["value"], dtype=np.float32)
    elif kind == "value":
        value = np.array(entry["value"], dtype=_VALUE_DTYPES[entry["dtype"]]).reshape(shape)
    elif kind == "binary":
        value = np.where(take_plane(count), 1.0, -1.0).astype(np.float32).reshape(shape)
    elif kind == "ternary":
        nonzero, negative = take_plane(count), take_plane(count)
        value = (nonzero * np.where(negative, -1.0, 1.0)).astype(np.float32).reshape(shape)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if kind in ("binary", "ternary") and entry["alpha"]:
        value = value * take_floats(shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
    return value
