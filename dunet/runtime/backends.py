"""The runtimes that run a network, one registry for the API, the CLI, eval, video and the benchmarks.

    openvino  OpenVINO, in every install (`pip install dunet`): IR and ONNX files, and any model file whose
              network it builds from the weights (dunet.runtime.graph); bf16 and int8 kernels on the CPU
    onnx      onnxruntime (`pip install 'dunet[onnx]'`): ONNX files
    torch     PyTorch (`pip install 'dunet[train]'`): every model file, on the CPU or a GPU

Each backend has one runner: dunet.runtime.openvino.OpenVinoPredictor, dunet.runtime.onnxruntime.OnnxPredictor
and dunet.engine.inference.TorchNetwork. A runner maps a float (B, 3, S, S) batch to the final head's heatmaps.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import numpy as np

from dunet import DunetError


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # what must be importable
    install: str  # the pip line that brings it
    runs: str  # what it runs, for `dunet info`


BACKENDS = {
    "openvino": Backend("openvino", "openvino", "pip install dunet", "OpenVINO IR, ONNX and dunet model files"),
    "onnx": Backend("onnx", "onnxruntime", "pip install 'dunet[onnx]'", "ONNX files"),
    "torch": Backend("torch", "torch", "pip install 'dunet[train]'", "dunet model files, on the CPU or a GPU"),
}
CHOICES = ("auto", *BACKENDS)
# The extra of pyproject.toml that installs each package the runtime install leaves out.
EXTRA_OF = {"cv2": "video", "torch": "train", "scipy": "train", "matplotlib": "train", "onnx": "train",
            "onnxscript": "train", "nncf": "train", "onnxruntime": "onnx", "pandas": "dlc", "tables": "dlc"}


# What users call the packages whose import name is not their project's name.
PROJECT_OF = {"cv2": "OpenCV (cv2)", "torch": "PyTorch", "tables": "PyTables"}


def missing_package_line(name: str) -> str | None:
    """The line that names the extra to install for a missing package, or None for one no extra installs."""
    top = name.split(".")[0]
    return f"this needs {PROJECT_OF.get(top, top)}, which `pip install dunet` leaves out: pip install " \
        f"'dunet[{EXTRA_OF[top]}]'" if top in EXTRA_OF else None


def import_optional(name: str):
    """A package of an extra (`EXTRA_OF`), imported; or a DunetError naming the extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise DunetError(missing_package_line(name) or f"this needs the {name} package") from None


FASTEST_FIRST = ("openvino", "onnx", "torch")  # bench/infer.py: OpenVINO bf16 / int8 are 2-4x PyTorch on a CPU


def installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name].module) is not None


def check_choice(name: str) -> str:
    if name not in CHOICES:
        raise DunetError(f"backend {name!r}: choose one of {', '.join(CHOICES)}")
    return name


def require(name: str):
    """The backend's module, imported; or one line naming what to install."""
    backend = BACKENDS[name]
    try:
        return importlib.import_module(backend.module)
    except ImportError:
        raise DunetError(f"the {name} backend needs the {backend.module} package: {backend.install}") from None


def fastest(device: str = "auto") -> str:
    """The fastest backend installed for `device`: a GPU (asked for by name) runs PyTorch."""
    if device not in ("auto", "cpu"):
        return "torch"
    return next((name for name in FASTEST_FIRST if installed(name)), "openvino")


def as_batch(images, input_size: int | None, where: str) -> np.ndarray:
    """(B, 3, S, S) float32 contiguous numpy from numpy or a CPU tensor, or a DunetError saying what is wrong."""
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise DunetError(f"{where}: expected images of shape (B, 3, S, S), got {tuple(images.shape)}")
    if input_size is not None and images.shape[2:] != (input_size, input_size):
        raise DunetError(f"{where}: the model takes {input_size}x{input_size} images, got "
                         f"{images.shape[2]}x{images.shape[3]}")
    if not np.issubdtype(images.dtype, np.floating):
        raise DunetError(f"{where}: expected float images in [0, 1], got dtype {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)
