"""PyTorch models converted once for onnxruntime and OpenVINO: the ONNX file of a model, kept in a cache
(`dunet.runtime.model.load_model` runs it)."""

from __future__ import annotations

import json
from pathlib import Path

from dunet import DunetError


def export_metadata(runner) -> dict[str, str]:
    """The metadata of an exported file: the model card (what inference reads back) and the training config."""
    from dunet.checkpoint import training_metadata

    return {**runner.card.stamped().to_metadata(), **training_metadata(runner.training)}


def model_key(runner) -> str:
    """A hash of everything the exported file depends on: weights, model card (not its provenance), dunet version."""
    import hashlib

    from dunet import __version__

    card = {**runner.card.to_dict(), "provenance": None}
    digest = hashlib.sha256(json.dumps([__version__, card], sort_keys=True).encode())
    for name, tensor in runner.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def cached_export(runner) -> Path:
    """The ONNX file of a PyTorch model (what onnxruntime and OpenVINO read), exported on first use and
    reused after: a few seconds to minutes per model, never per call. Written atomically, so a killed
    export or two processes exporting at once never leave a broken file behind."""
    import os
    import tempfile

    import torch

    from dunet.deploy.onnx_export import export_onnx

    from dunet.files import cache_dir

    folder = cache_dir()
    path = folder / f"{model_key(runner)}.onnx"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DunetError(f"{folder}: cannot create the model cache ({err.strerror}); set DUNET_CACHE "
                         "to a writable folder or use backend torch") from None
    meta = export_metadata(runner)
    model = runner.model.float().to(memory_format=torch.contiguous_format)
    handle, tmp = tempfile.mkstemp(suffix=".onnx", dir=folder)
    os.close(handle)
    try:
        # The TorchScript exporter: the same heatmaps within 1e-4 as the default one, several times faster
        # to export (docs/deployment.md), which is what a user waits for on first use.
        export_onnx(model, tmp, runner.input_size, metadata=meta, exporter="torchscript")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
