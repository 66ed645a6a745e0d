"""onnxruntime: runs an exported ONNX file (float or int8) on the CPU, for those who prefer it to OpenVINO
(`pip install 'dunet[onnx]'`). No PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.runtime import backends
from dunet.runtime.backends import as_batch


class OnnxPredictor:
    """An exported ONNX file (float or int8) run by onnxruntime on the CPU."""

    backend, precision = "onnx", "fp32"  # float layers run in fp32

    def __init__(self, path: str | Path, threads: int = 2):
        ort = backends.require("onnx")

        self.path = Path(path)
        if not self.path.is_file():
            raise DunetError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise DunetError(f"{self.path}: onnxruntime cannot load it ({type(err).__name__}: {err})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DunetError(f"{self.path}: expected one image input (B, 3, S, S), found "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        size = inputs[0].shape[2]
        self.input_size = size if isinstance(size, int) else None
        batch = inputs[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        # The final head is the last output (the dunet export convention).
        self.output_name = self.session.get_outputs()[-1].name
        self.metadata = {key.removeprefix("dunet."): value
                         for key, value in self.session.get_modelmeta().custom_metadata_map.items()}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = as_batch(images, self.input_size, f"{self.path}")
        step = self.fixed_batch
        if step is None or batch.shape[0] == step:
            return self._run(batch)
        # A fixed-batch file: run it in chunks of its batch size, the last one zero-padded.
        outputs = []
        for start in range(0, batch.shape[0], step):
            chunk = batch[start:start + step]
            count = chunk.shape[0]
            if count < step:
                chunk = np.concatenate([chunk, np.zeros((step - count, *chunk.shape[1:]), np.float32)])
            outputs.append(self._run(chunk)[:count])
        return np.concatenate(outputs)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]
