"""An exported ONNX model (fp32 or int8) used like a LandmarkModel: same cropping, decoding and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dunet import DunetError
from dunet.engine.config import config_from_dict
from dunet.engine.inference import LandmarkModel, spec_from_dict


class OnnxLandmarkModel(LandmarkModel):
    def __init__(self, predictor, config, spec, source: str):
        self.predictor = predictor
        self.config, self.spec, self.source, self.precision = config, spec, source, "fp32"
        self.kinds = config.supervision_per_head(config.model.heads)

    @classmethod
    def load(cls, path: str | Path, precision: str = "fp32") -> "OnnxLandmarkModel":
        from dunet.deploy.runtime import OnnxPredictor

        predictor = OnnxPredictor(path)
        meta = predictor.metadata
        if "train_config" not in meta or "spec" not in meta:
            raise DunetError(f"{path}: not exported by `dunet export` (no dunet config in its metadata)")
        config = config_from_dict(json.loads(meta["train_config"]))
        return cls(predictor, config, spec_from_dict(json.loads(meta["spec"])), str(path))

    @property
    def name(self) -> str:
        return f"{self.config.model.arch}({self.config.model.units}) [onnx: {Path(self.source).name}]"

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
