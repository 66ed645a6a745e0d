"""Fast CPU deployment: ONNX export, onnxruntime / PyTorch predictors (fp32, bf16), static int8
quantization and an offline face detector. See docs/deployment.md.

onnx, onnxruntime and opencv are optional (the `deploy` extra); they are imported only when used.
"""

from dunet.deploy.int8 import float_layers, quantize_onnx_int8
from dunet.deploy.onnx_export import bake_quantized_weights, export_onnx, output_names, read_metadata
from dunet.deploy.runtime import OnnxPredictor, Predictor, TorchPredictor

__all__ = [
    "OnnxPredictor",
    "Predictor",
    "TorchPredictor",
    "bake_quantized_weights",
    "export_onnx",
    "float_layers",
    "output_names",
    "quantize_onnx_int8",
    "read_metadata",
]
