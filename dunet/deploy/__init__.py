"""Deployment, the training side of it: ONNX export, int8 quantization (onnxruntime's and NNCF's) and OpenVINO IR
files, made with PyTorch. What runs them is dunet.runtime. See docs/deployment.md. Names load on first use
(`dunet.lazy`)."""

from dunet.lazy import lazy_exports

_EXPORTS = {
    "float_layers": "dunet.deploy.int8", "quantize_onnx_int8": "dunet.deploy.int8",
    "bake_quantized_weights": "dunet.deploy.onnx_export", "export_onnx": "dunet.deploy.onnx_export",
    "output_names": "dunet.deploy.onnx_export", "read_metadata": "dunet.deploy.onnx_export",
    "quantize_openvino_int8": "dunet.deploy.openvino", "save_openvino": "dunet.deploy.openvino",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
