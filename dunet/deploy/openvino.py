"""OpenVINO: the fastest CPU runtime measured on this machine (bench/infer.py, docs/research/deployment.md).

OpenVINO fuses each BN-ReLU into one pass and runs convolutions on this Xeon's AMX tiles, in bfloat16
for a float model and in int8 for a model quantized here. Both read an ONNX file from `export_onnx`.

    predictor = OpenVinoPredictor("model.onnx", precision="bf16")    # float model, bf16 kernels
    quantize_openvino_int8("model.onnx", "model-int8.xml", calibration=[batch, ...])
    predictor = OpenVinoPredictor("model-int8.xml")                   # int8 convolutions

int8 is post-training quantization by NNCF (OpenVINO's own quantizer): symmetric int8 weights per
output channel, activations with ranges from the calibration images. The heads stay in float; the stem's
7x7 convolution, which a binary model keeps in full precision as in the paper, is int8 here: it reads 8-bit
pixels anyway, and in float it took a fifth of a small model's time. Binary and ternary weights are exact in
int8 (see dunet.deploy.int8). openvino and nncf are the optional `openvino` extra; imported only when used.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from dunet import DunetError
from dunet.deploy.int8 import calibration_set
from dunet.runtime.openvino import (  # noqa: F401 (OpenVinoPredictor: the runner, here for the exporters' callers)
    RT_INFO_KEY, OpenVinoPredictor, _openvino, _read_model, _reason, _signal_stack_kept, model_metadata,
)

def _save_ir(model, metadata: dict[str, str], xml_path: Path) -> Path:
    """Write `model` as an OpenVINO IR (.xml and .bin) with the dunet metadata in its rt_info."""
    if xml_path.suffix != ".xml":
        raise DunetError(f"{xml_path}: an OpenVINO IR file name must end in .xml")
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_KEY, key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _openvino().save_model(model, str(xml_path), compress_to_fp16=False)
    except RuntimeError as err:  # OpenVINO's writer reports a full disk, say, as a RuntimeError
        raise DunetError(f"{xml_path}: cannot write the OpenVINO model ({_reason(err)})") from None
    return xml_path


def save_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert an ONNX file from `export_onnx` to a float OpenVINO IR, metadata included."""
    onnx_path = Path(onnx_path)
    model = _read_model(onnx_path)
    return _save_ir(model, model_metadata(onnx_path, model), Path(xml_path))


def head_convolutions(model) -> list[str]:
    """Friendly names of the heads: the convolutions whose output reaches a graph output (through a bias Add
    if any). They stay in float in an int8 file: the heatmaps' sub-pixel peaks need their full precision."""
    def producer(op):
        return op.input_value(0).get_node()

    names = []
    for result in model.get_results():
        op = producer(result)
        while op.get_type_name() in ("Add", "Convert"):
            op = producer(op)
        if op.get_type_name() == "Convolution":
            names.append(op.get_friendly_name())
    return names


def quantize_openvino_int8(fp32_path: str | Path, int8_path: str | Path, calibration, *,
                           keep_float: list[str] | None = None) -> Path:
    """Write an int8 OpenVINO IR (`int8_path`, .xml with its .bin) of the float ONNX file `fp32_path`,
    calibrated on `calibration`: image batches (B, 3, S, S) float32 in [0, 1] like the ones the model
    will see. `keep_float`: convolution names to leave in float, default the heads (`head_convolutions`)."""
    _openvino()
    try:
        import nncf
    except ImportError:
        raise DunetError("OpenVINO int8 needs the nncf package: pip install 'dunet[train]'") from None
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if int8_path.suffix != ".xml":
        raise DunetError(f"{int8_path}: an OpenVINO IR file name must end in .xml")
    nncf.set_log_level(logging.WARNING)  # its INFO lines list every layer left in float
    model = _read_model(fp32_path)
    samples = [sample[None] for batch in calibration_set(calibration) for sample in batch]
    keep = head_convolutions(model) if keep_float is None else list(keep_float)
    try:
        with _signal_stack_kept():  # NNCF compiles and releases models of its own
            quantized = nncf.quantize(
                model, nncf.Dataset(samples), subset_size=len(samples), preset=nncf.QuantizationPreset.PERFORMANCE,
                ignored_scope=nncf.IgnoredScope(names=keep), fast_bias_correction=True,
                # Pre-VNNI int8 kernels (AVX2) add u8 x s8 products in pairs into int16, which saturates on raw
                # pixels times full 8-bit weights (0.2 points of face NME lost on an AVX2 CPU): the stem, the first
                # layer, gets 7-bit weights (NNCF's overflow fix; no loss measured). Deeper layers, fed by BN-ReLU,
                # keep all 8 bits.
                advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.FIRST_LAYER))
            gc.collect()  # NNCF's compiled models go here, inside the guard
    except Exception as err:
        raise DunetError(f"int8 quantization of {fp32_path} failed: {type(err).__name__}: {err}") from err
    return _save_ir(quantized, {**model_metadata(fp32_path, model), "precision": "int8-openvino"}, int8_path)
