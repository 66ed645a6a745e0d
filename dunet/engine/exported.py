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
    def load(cls, path: str | Path, backend: str = "onnx", precision: str = "auto") -> "ExportedLandmarkModel":
        from dunet.engine.hardware import choose_precision

        precision, _ = choose_precision(precision, torch.device("cpu"))
        if backend == "openvino":
            from dunet.deploy.openvino import OpenVinoPredictor

            predictor = OpenVinoPredictor(path, precision, streams=2)  # batches on 2 streams: ~8 % faster
        elif backend == "onnx":
            from dunet.deploy.runtime import OnnxPredictor

            if Path(path).suffix == ".xml":
                raise DunetError(f"{path}: an OpenVINO IR runs with --backend openvino")
            predictor = OnnxPredictor(path)
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
