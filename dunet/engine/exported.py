"""An exported model (ONNX file or OpenVINO IR, float or int8) used like a LandmarkModel: the same
cropping, decoding and metrics, with onnxruntime or OpenVINO running the network."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dunet import DunetError
from dunet.engine.config import config_from_dict
from dunet.engine.inference import LandmarkModel, spec_from_dict

BACKENDS = ("onnx", "openvino")


class ExportedLandmarkModel(LandmarkModel):
    def __init__(self, predictor, config, spec, source: str, backend: str):
        self.predictor = predictor
        self.config, self.spec, self.source, self.backend = config, spec, source, backend
        self.precision = getattr(predictor, "precision", "fp32")
        self.kinds = config.supervision_per_head(config.model.heads)

    @classmethod
    def load(cls, path: str | Path, backend: str = "onnx", precision: str = "auto",
             threads: int = 0) -> "ExportedLandmarkModel":
        """`threads`: the runtime's threads; 0 = every usable core."""
        from dunet.engine.hardware import choose_precision, usable_cores

        precision, _ = choose_precision(precision, torch.device("cpu"))
        threads = threads or usable_cores()
        if backend == "openvino":
            from dunet.deploy.openvino import OpenVinoPredictor

            # Batches on 2 streams: ~8 % faster.
            predictor = OpenVinoPredictor(path, precision, threads=threads, streams=min(2, threads))
        elif backend == "onnx":
            from dunet.deploy.runtime import OnnxPredictor

            if Path(path).suffix == ".xml":
                raise DunetError(f"{path}: an OpenVINO IR runs with --backend openvino")
            predictor = OnnxPredictor(path, threads=threads)
        else:
            raise DunetError(f"backend {backend!r}: choose one of torch, {', '.join(BACKENDS)}")
        meta = predictor.metadata
        if "train_config" not in meta or "spec" not in meta:
            raise DunetError(f"{path}: not exported by `dunet export` (no dunet config in its metadata)")
        config = config_from_dict(json.loads(meta["train_config"]))
        return cls(predictor, config, spec_from_dict(json.loads(meta["spec"])), str(path), backend)

    @property
    def name(self) -> str:
        return f"{self.config.model.arch}({self.config.model.units}) [{self.backend}: {Path(self.source).name}]"

    def heatmaps(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        out = torch.from_numpy(self.predictor(images.float().numpy()))
        if self.kinds[-1] == "detection":
            out = torch.sigmoid(out)
        if flip:
            if not self.spec.can_flip:
                raise DunetError(f"flip test needs left/right pairs, which the {self.spec.name!r} spec lacks")
            mirrored = torch.from_numpy(self.predictor(torch.flip(images, dims=[3]).float().numpy()))
            if self.kinds[-1] == "detection":
                mirrored = torch.sigmoid(mirrored)
            mirrored = torch.flip(mirrored, dims=[3])[:, torch.as_tensor(self.spec.flip_index())]
            out = (out + mirrored) / 2
        return out

    def quant_report(self, metrics: dict) -> dict:
        return {}


def cache_dir() -> Path:
    """Where converted models are kept: $DUNET_CACHE, else ~/.cache/dunet."""
    import os

    return Path(os.environ.get("DUNET_CACHE") or Path.home() / ".cache" / "dunet")


def model_key(runner: LandmarkModel) -> str:
    """A hash of everything the exported file depends on: weights, config, landmark spec, dunet version."""
    import hashlib

    from dunet import __version__
    from dunet.engine.config import config_to_dict
    from dunet.engine.inference import spec_to_dict

    digest = hashlib.sha256(json.dumps([__version__, config_to_dict(runner.config), spec_to_dict(runner.spec)],
                                       sort_keys=True).encode())
    for name, tensor in runner.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def cached_export(runner: LandmarkModel) -> Path:
    """The ONNX file of a PyTorch model (what onnxruntime and OpenVINO read), exported on first use and
    reused after: a few seconds to minutes per model, never per call. Written atomically, so a killed
    export or two processes exporting at once never leave a broken file behind."""
    import os
    import tempfile

    import torch

    from dunet.deploy.onnx_export import export_onnx
    from dunet.deploy.runtime import quiet_exporter_logs
    from dunet.engine.config import config_to_dict
    from dunet.engine.inference import spec_to_dict

    folder = cache_dir()
    path = folder / f"{model_key(runner)}.onnx"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DunetError(f"{folder}: cannot create the model cache ({err.strerror}); set DUNET_CACHE "
                         "to a writable folder or use backend torch") from None
    meta = {"train_config": json.dumps(config_to_dict(runner.config)), "spec": json.dumps(spec_to_dict(runner.spec))}
    model = runner.model.float().to(memory_format=torch.contiguous_format)
    handle, tmp = tempfile.mkstemp(suffix=".onnx", dir=folder)
    os.close(handle)
    try:
        # The TorchScript exporter: the same heatmaps within 1e-4 as the default one, several times faster
        # to export (docs/deployment.md), which is what a user waits for on first use.
        with quiet_exporter_logs():
            export_onnx(model, tmp, runner.input_size, metadata=meta, exporter="torchscript")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
