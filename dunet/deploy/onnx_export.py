"""Export a landmark model (DU-Net or stacked hourglass) to ONNX.

The exported graph takes `images` (B, 3, S, S) float RGB in [0, 1] and returns one output per
supervised head, `heatmaps_0` ... `heatmaps_{N-1}`, each (B, K, S/4, S/4), the final head last.

Two exporters ship with torch 2.13:
- "dynamo" (default): `torch.onnx.export(..., dynamo=True)`, torch.export + onnxscript. The supported
  path, and its graph is already optimised (no Identity chains), but exporting takes about 10x longer
  (~30 s for a small model, ~2 min for DU-Net(8) on this 2-core machine).
- "torchscript": the legacy tracer. Deprecated by PyTorch, but fast to export; same runtime speed.
Both match PyTorch within 1e-4 (tests/deploy/test_onnx_export.py).

Quantized models (dunet.quant.QConv2d) are exported with their binary / ternary weights baked into
plain float initializers (`bake_quantized_weights`), so the file holds the weights the model computes
with and an int8 quantizer sees them as constants. k-bit input quantization is kept by default
(fp32 parity with the training-time model) and can be dropped for the static int8 path, which
replaces it with its own calibrated activation quantization. Binary (sign) inputs stay in the graph
as a sign; they cannot be dropped, so int8 export refuses a model with them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from dunet import DunetError
from dunet.files import atomic_write_file

DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
INPUT_NAME = "images"
METADATA_PREFIX = "dunet."


def output_names(heads: int) -> list[str]:
    return [f"heatmaps_{i}" for i in range(heads)]


def bake_quantized_weights(model: nn.Module, *, keep_input_quantizers: bool = True) -> nn.Module:
    """A copy of `model` in eval mode in which every quantized conv computes with plain float weights
    equal to its quantized weights (sign / ternary codes times alpha). With `keep_input_quantizers`,
    convs with k-bit inputs still quantize their inputs (same outputs as `model`); without, they
    become nn.Conv2d (what static int8 quantization wants: it brings its own activation grid)."""
    from dunet.quant import QConv2d

    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, QConv2d):
                continue
            if child.spec.sign_inputs and not keep_input_quantizers:  # an 8-bit grid cannot stand in for sign(x)
                raise DunetError(f"export: this model has binary (sign) inputs ({child.spec.name}), which int8 "
                                 "deployment cannot replace with its 8-bit grid; export it in float (the sign stays)")
            weight = child.quantized_weight().detach()
            spec = dataclasses.replace(child.spec, weights="fp", alpha=False)
            if keep_input_quantizers and spec.input_bits is not None:
                child.weight.data.copy_(weight)
                child.spec = spec
                continue
            plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                              padding=child.padding, dilation=child.dilation, groups=child.groups,
                              bias=child.bias is not None)
            plain.weight.data.copy_(weight)
            if child.bias is not None:
                plain.bias.data.copy_(child.bias.detach())
            setattr(parent, name, plain)
    return model


def _check_input_size(model: nn.Module, input_size: int) -> None:
    levels = getattr(getattr(model, "cfg", None), "levels", None)
    if levels is not None and input_size % (4 * 2**levels):
        raise DunetError(f"export: input size {input_size} must be a multiple of {4 * 2**levels} for this model "
                         f"(stem stride 4 x 2^levels, levels={levels})")


def _count_heads(model: nn.Module, example: Tensor) -> int:
    try:
        with torch.no_grad():
            outputs = model(example)
    except RuntimeError as err:
        raise DunetError(f"export: the model does not run on {tuple(example.shape)} images ({err})") from None
    if not isinstance(outputs, (tuple, list)) or not all(isinstance(o, Tensor) for o in outputs):
        raise DunetError("export: the model must return a tuple of heatmap tensors")
    return len(outputs)


def _model_metadata(model: nn.Module, input_size: int, heads: int) -> dict[str, str]:
    meta = {"input_size": str(input_size), "heads": str(heads), "input": INPUT_NAME,
            "final_output": output_names(heads)[-1]}
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg):
        meta["model_config"] = json.dumps(dataclasses.asdict(cfg))
    return meta


def export_onnx(model: nn.Module, path: str | Path, input_size: int, *, dynamic_batch: bool = True,
                opset: int = DEFAULT_OPSET, exporter: str = "dynamo", keep_input_quantizers: bool = True,
                metadata: dict[str, str] | None = None) -> Path:
    """Write `model` (in eval mode, on a copy) to `path` as ONNX and return the path.

    `dynamic_batch`: the batch dimension is symbolic; otherwise the file is fixed to batch 1.
    `metadata`: extra string key/values stored in the file (e.g. a landmark spec as JSON), read back
    by `read_metadata` / `OnnxPredictor.metadata` together with input size, heads and model config.
    """
    if exporter not in EXPORTERS:
        raise DunetError(f"export: unknown exporter {exporter!r}; choose one of: {', '.join(EXPORTERS)}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise DunetError(f"{path}: an ONNX file name must end in .onnx")
    if not path.parent.is_dir():
        raise DunetError(f"{path}: folder {path.parent} does not exist")
    _check_input_size(model, input_size)
    model = bake_quantized_weights(model, keep_input_quantizers=keep_input_quantizers)
    model = model.float().to(memory_format=torch.contiguous_format)
    # Batch 2, not 1: torch.export specialises a dimension of size 1 to a constant.
    example = torch.rand(2 if dynamic_batch else 1, 3, input_size, input_size)
    heads = _count_heads(model, example)
    names = output_names(heads)
    try:
        # Silence the exporters' progress prints, deprecation and tracer warnings; errors still surface.
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                _export_dynamo(model, example, path, names, dynamic_batch, opset)
            else:
                _export_torchscript(model, example, path, names, dynamic_batch, opset)
    except DunetError:
        raise
    except Exception as err:  # exporter failures arrive as many exception types
        raise DunetError(f"export to {path} failed ({exporter} exporter): {type(err).__name__}: {err}") from err
    meta = _model_metadata(model, input_size, heads)
    meta.update(metadata or {})
    _write_metadata(path, meta)
    return path


def _export_dynamo(model: nn.Module, example: Tensor, path: Path, names: list[str], dynamic_batch: bool,
                   opset: int) -> None:
    dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with quiet_exporter_logs():
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=names,
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, verbose=False,
                                    external_data=False)
    program.save(str(path), external_data=False)


def _export_torchscript(model: nn.Module, example: Tensor, path: Path, names: list[str], dynamic_batch: bool,
                        opset: int) -> None:
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None
    with quiet_exporter_logs():
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def _write_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    atomic_write_file(path, proto.SerializeToString(), what="the ONNX file")  # a failure keeps no half-written file


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `dunet.*` metadata of an exported file, keys without the prefix."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DunetError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise DunetError(f"{path}: not a readable ONNX file ({err})") from None
    return {p.key[len(METADATA_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)}


class quiet_exporter_logs:
    """Silence the ONNX exporter's log lines that say nothing to a user (e.g. four "torchvision is not
    installed. Skipping torchvision::nms" warnings: dunet never uses those operators) and its warnings."""

    LOGGERS = ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript")

    def __enter__(self):
        import logging
        import warnings

        self._levels = {name: logging.getLogger(name).level for name in self.LOGGERS}
        for name in self.LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        import logging

        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False
