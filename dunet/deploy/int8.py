"""int8 quantization of an exported model with onnxruntime, static or dynamic.

Weights: int8 per output channel, symmetric. Activations: uint8 (u8 x s8 is the fast integer kernel
on x86, VNNI / AMX), either
- static: scale and zero point fixed from a calibration set (QDQ format), or
- dynamic: scale and zero point computed at run time from each conv input (DynamicQuantizeLinear ->
  ConvInteger). One scale per batch, so with batch 1 one per sample, as the training-time k-bit input
  quantizer of a QIG model does (dunet.quant.quantizers.quantize_input); no calibration data needed.
The first convolution and the heads (convolutions whose output is a graph output) stay in float, as
in the paper, because localisation needs precise heatmaps.

Binary and ternary weights (dunet.quant BW / TW, alpha or not) are exact in int8: a filter's
weights are {-a, +a} or {-a, 0, +a}, so the per-channel scale a / 127 gives codes {-127, 0, 127}
with no rounding. What int8 adds for such a model is only the activation grid.

    export_onnx(model, "m.onnx", 256, keep_input_quantizers=False)
    quantize_onnx_int8("m.onnx", "m.int8.onnx", calibration=[batch1, batch2, ...])
    quantize_onnx_int8("m.onnx", "m.int8.onnx", mode="dynamic")
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from dunet import DunetError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
MODES = ("static", "dynamic")


def float_layers(model) -> tuple[list[str], list[str]]:
    """Names of (first convolutions, head convolutions) of an ONNX model: convs that read the graph
    input, and convs whose output is a graph output (through Identity nodes)."""
    graph_inputs = {i.name for i in model.graph.input}
    producer = {out: node for node in model.graph.node for out in node.output}
    first = [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in graph_inputs]
    heads = []
    for output in model.graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "Conv":
            heads.append(node.name)
    return first, heads


def _name_nodes(model) -> None:
    """Give every node a unique name: nodes_to_exclude matches by name."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


def calibration_set(calibration: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Calibration images as (B, 3, S, S) float32 batches, or a DunetError saying what is wrong."""
    batches = []
    for batch in calibration:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DunetError(f"int8 calibration: expected images (B, 3, S, S) or (3, S, S), got {batch.shape}")
        batches.append(np.ascontiguousarray(batch))
    if not batches:
        raise DunetError("int8 calibration: the calibration set is empty; give at least one image batch")
    return batches


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over a list of image batches."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self.input_name = input_name
        self.batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray] | None = None,
                       *, mode: str = "static", method: str = "minmax", per_channel: bool = True,
                       keep_float: Iterable[str] | None = None) -> Path:
    """Write an int8 version of the float ONNX file `fp32_path` to `int8_path`.

    `mode` "static" needs `calibration`: image batches (B, 3, S, S) float32 in [0, 1] like the ones the
    model will see (a few dozen images are enough); "dynamic" needs none. `keep_float`: node names to
    leave in float, default the first convolution(s) and the heads (`float_layers`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode not in MODES:
        raise DunetError(f"int8: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if method not in CALIBRATION_METHODS:
        raise DunetError(f"int8: unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if not fp32_path.is_file():
        raise DunetError(f"{fp32_path}: no such ONNX file")
    try:
        model = onnx.load(str(fp32_path))
    except Exception as err:
        raise DunetError(f"{fp32_path}: not a readable ONNX file ({err})") from None
    _name_nodes(model)
    if keep_float is None:
        first, heads = float_layers(model)
        keep_float = first + heads
    if mode == "static":
        reader = _CalibrationReader(model.graph.input[0].name, calibration_set(calibration or []))
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        # The quantizer logs a "consider pre-processing" advice on the root logger on every call; its
        # pre-processing (shape inference, BN folding) adds nothing to an export from dunet.
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))
        try:
            if mode == "dynamic":
                quantize_dynamic(str(named), str(int8_path), op_types_to_quantize=["Conv"], per_channel=per_channel,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=list(keep_float),
                                 extra_options={"WeightSymmetric": True})
            else:
                quantize_static(
                    str(named), str(int8_path), reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"],
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(keep_float),
                    calibrate_method=calibrate,
                    extra_options={"WeightSymmetric": True},
                )
        except DunetError:
            raise
        except Exception as err:
            raise DunetError(f"int8 quantization of {fp32_path} failed: {type(err).__name__}: {err}") from err
        finally:
            root.setLevel(level)
    if mode == "dynamic" and per_channel:
        _per_channel_integer_weights(int8_path, model)
    _copy_metadata(fp32_path, int8_path, precision="int8" if mode == "static" else "int8-dynamic")
    return int8_path


def _per_channel_integer_weights(int8_path: Path, float_model) -> None:
    """Requantize every ConvInteger weight with one scale per output filter.

    onnxruntime's dynamic quantizer gives a ConvInteger one weight scale per tensor, so filters with
    different magnitudes (alpha, or a BN the exporter folded into the conv) round to inexact codes.
    With a scale per filter, max|W_f| / 127, binary and ternary filters {-a, 0, +a} are exact codes
    {-127, 0, 127}; the (1, C, 1, 1) scales broadcast in the Mul that already rescales the int32
    output by input scale x weight scale."""
    import onnx
    import torch
    from onnx import numpy_helper

    from dunet.quant.quantizers import int8_per_channel

    floats = {t.name: numpy_helper.to_array(t) for t in float_model.graph.initializer}
    model = onnx.load(str(int8_path))
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "ConvInteger" or not node.input[1].endswith("_quantized"):
            continue
        base = node.input[1].removesuffix("_quantized")
        weight, scale_name = floats.get(base), base + "_scale"
        if weight is None or scale_name not in inits or node.input[1] not in inits:
            continue
        codes, scale = (t.numpy() for t in int8_per_channel(torch.tensor(weight)))  # a copy: onnx arrays are read-only
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(codes, node.input[1]))
        inits[scale_name].CopyFrom(numpy_helper.from_array(scale.reshape(1, -1, 1, 1), scale_name))
    onnx.save(model, str(int8_path))


def _copy_metadata(source: Path, target: Path, **extra: str) -> None:
    import onnx

    from dunet.deploy.onnx_export import METADATA_PREFIX, read_metadata

    meta = read_metadata(source)
    meta.update(extra)
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    onnx.save(proto, str(target))

