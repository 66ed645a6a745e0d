"""Fast CPU deployment: ONNX export, onnxruntime / OpenVINO / PyTorch predictors (fp32, bf16), int8
quantization and an offline face detector. See docs/deployment.md. Names load on first use (`dunet.lazy`)."""

from dunet.lazy import lazy_exports

_EXPORTS = {
    "float_layers": "dunet.deploy.int8", "quantize_onnx_int8": "dunet.deploy.int8",
    "bake_quantized_weights": "dunet.deploy.onnx_export", "export_onnx": "dunet.deploy.onnx_export",
    "output_names": "dunet.deploy.onnx_export", "read_metadata": "dunet.deploy.onnx_export",
    "OpenVinoPredictor": "dunet.deploy.openvino", "quantize_openvino_int8": "dunet.deploy.openvino",
    "save_openvino": "dunet.deploy.openvino",
    "OnnxPredictor": "dunet.deploy.runtime", "Predictor": "dunet.deploy.runtime", "TorchPredictor": "dunet.deploy.runtime",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
