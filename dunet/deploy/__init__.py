"""Fast CPU deployment: ONNX export, onnxruntime / OpenVINO / PyTorch predictors (fp32, bf16), int8
quantization and an offline face detector. See docs/deployment.md.

onnx, onnxruntime and opencv are optional (the `deploy` extra), openvino and nncf too (the `openvino`
extra); they are imported only when used.
"""

from dunet.deploy.int8 import float_layers, quantize_onnx_int8
from dunet.deploy.onnx_export import bake_quantized_weights, export_onnx, output_names, read_metadata
from dunet.deploy.openvino import OpenVinoPredictor, quantize_openvino_int8, save_openvino
from dunet.deploy.runtime import OnnxPredictor, Predictor, TorchPredictor

__all__ = [
    "OnnxPredictor",
    "OpenVinoPredictor",
    "Predictor",
    "TorchPredictor",
    "bake_quantized_weights",
    "export_onnx",
    "float_layers",
    "output_names",
    "quantize_onnx_int8",
    "quantize_openvino_int8",
    "read_metadata",
    "save_openvino",
]
