"""The model card: a model's inference contract, everything needed to run it and nothing of its training.

Every model file dunet writes carries the same card, one JSON object under the metadata key `dunet_card`:
checkpoint directories (in their `model.safetensors`, with a `card.json` copy to read), single `.safetensors`
models, packed files and ONNX / OpenVINO files (whose metadata keys carry a `dunet.` prefix). Its keys:

    card_version  CARD_VERSION; a card from a newer dunet is refused with a line saying so
    network       the architecture (dunet.models.config.ModelConfig): what builds the graph from the weights
    input         the input it takes: (B, 3, size, size) RGB in [0, 1] (dunet.data.transforms.network_input)
    landmarks     the landmark set (dunet.data.spec): names, flip pairs, skeleton, normaliser, box margin
    codec         the heatmap codec (dunet.data.heatmaps.HeatmapCodec): input size, stride, sigma, refine, blur
    heads         what each output of the network is, in output order: "regression" heatmaps, or "detection"
                  logits that a sigmoid turns into probabilities; inference decodes the last one
    crop          how a crop is found when no box is given: "detector" ("blazeface", the shipped face detector,
                  "blazepose", the shipped person detector, or null: the whole image); the crop is the spec's
                  box margin around the box
    provenance    the dunet version and date it was written, the held-out `metrics`, a shipped model's `task`,
                  data, recipe and validation

How the model was trained (the training config: what `--resume` and `--init` read, which split `dunet eval`
holds out) travels beside the card, under `dunet_training`, and inference never reads it. Cards of version 1
held the training config inside: `card_from_metadata` reads them, and the files of dunet 0.1.0 written before
cards, into a card too.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from dunet import DunetError, __version__
from dunet.data.heatmaps import HeatmapCodec
from dunet.data.spec import DatasetSpec, spec_from_dict, spec_to_dict
from dunet.models.config import ModelConfig

CARD_VERSION = 2
METADATA_KEY = "dunet_card"
TRAINING_KEY = "dunet_training"
HEAD_KINDS = ("regression", "detection")
DETECTORS = ("blazeface", "blazepose")  # the shipped face and person detectors (dunet.runtime.detect)
INPUT = {"layout": "NCHW", "colour": "RGB", "range": [0, 1]}  # dunet.data.transforms.network_input


@dataclass(frozen=True)
class ModelCard:
    network: ModelConfig
    spec: DatasetSpec
    codec: HeatmapCodec
    heads: tuple[str, ...] = ("regression",)
    detector: str | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = None
        if self.spec.num_keypoints != self.network.landmarks:
            problem = f"{self.spec.num_keypoints} keypoint names but {self.network.landmarks} heatmaps"
        elif self.codec.input_size != self.network.input_size:
            problem = f"a {self.codec.input_size} px codec for a {self.network.input_size} px network"
        elif not self.heads or any(kind not in HEAD_KINDS for kind in self.heads):
            problem = f"heads {list(self.heads)}: each one of {', '.join(HEAD_KINDS)}"
        elif self.detector is not None and self.detector not in DETECTORS:
            problem = f"detector {self.detector!r}: this dunet knows {', '.join(DETECTORS)}"
        if problem:
            raise DunetError(f"the model card disagrees with itself: {problem}")

    @property
    def input_size(self) -> int:
        return self.network.input_size

    @property
    def final_head(self) -> str:
        """What the decoded output is: "regression" or "detection"."""
        return self.heads[-1]

    def stamped(self, **provenance) -> ModelCard:
        """The card as it is written now: its provenance gets the dunet version, the date and `provenance`."""
        written = {"dunet_version": __version__,
                   "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        return dataclasses.replace(self, provenance={**self.provenance, **written, **provenance})

    def to_dict(self) -> dict:
        codec = self.codec
        return {"card_version": CARD_VERSION, "network": dataclasses.asdict(self.network),
                "input": {"size": self.input_size, **INPUT}, "landmarks": spec_to_dict(self.spec),
                "codec": {"input_size": codec.input_size, "stride": codec.stride, "sigma": codec.sigma,
                          "refine": codec.refine, "blur": codec.blur},
                "heads": list(self.heads), "crop": {"detector": self.detector}, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict, where: str = "model card") -> ModelCard:
        version = data.get("card_version")
        if not isinstance(version, int) or version < 1:
            raise DunetError(f"{where}: not a dunet model card (card_version {version!r})")
        if version > CARD_VERSION:
            raise DunetError(f"{where}: its model card is from a newer dunet (card version {version}, this one "
                             f"reads up to {CARD_VERSION}); upgrade dunet (pip install -U dunet)")
        if version == 1:
            data = _from_version_1(data, where)
        missing = [key for key in ("network", "landmarks", "codec", "heads") if not data.get(key)]
        if missing:
            raise DunetError(f"{where}: its model card is incomplete: no {' and no '.join(missing)}; "
                             "re-export it from its checkpoint with this dunet")
        try:
            network = ModelConfig(**data["network"])
            codec = {k: v for k, v in data["codec"].items() if k != "stride"}
            codec = HeatmapCodec(**codec)
        except (TypeError, ValueError, DunetError) as err:
            raise DunetError(f"{where}: its model card's network or codec is damaged ({err})") from None
        if data["codec"].get("stride", codec.stride) != codec.stride:
            raise DunetError(f"{where}: heatmaps at stride {data['codec']['stride']}; this dunet's networks "
                             f"have stride {codec.stride}")
        try:
            spec = spec_from_dict(data["landmarks"])
        except (KeyError, TypeError, ValueError, DunetError) as err:
            raise DunetError(f"{where}: its landmark spec is damaged ({type(err).__name__}: {err})") from None
        try:
            return cls(network, spec, codec, tuple(data["heads"]), (data.get("crop") or {}).get("detector"),
                       data.get("provenance") or {})
        except DunetError as err:
            raise DunetError(f"{where}: {err}") from None

    def to_metadata(self) -> dict[str, str]:
        """The card as a model file's metadata (string keys and values)."""
        return {METADATA_KEY: json.dumps(self.to_dict())}


TASK_DETECTORS = {"face": "blazeface", "pose": "blazepose"}  # a shipped model's task -> the detector its card names


def detector_for(task: str | None) -> str | None:
    """The detector that finds a shipped model's crop when no box is given: BlazeFace for a face model, BlazePose's
    person detector for a pose model (how each one's boxes relate to the landmark boxes was measured:
    dunet.api.DETECTOR_BOX). A model trained by a user predicts on the box given, else the whole image, unless
    asked to find faces (`dunet.load(..., detect_faces=True)`)."""
    return TASK_DETECTORS.get(task)


def _from_version_1(data: dict, where: str) -> dict:
    """A version-1 card (training config inside, `heads` and `decode` written out) in version-2 keys."""
    config, decode = data.get("config"), data.get("decode")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not isinstance(decode, dict):
        raise DunetError(f"{where}: its model card (version 1) is incomplete: no config or decode settings; "
                         "re-export it from its checkpoint with this dunet")
    provenance = data.get("provenance") or {}
    return {"network": config["model"], "landmarks": data.get("spec"), "heads": data.get("heads"),
            "codec": {k: decode[k] for k in ("input_size", "sigma", "refine", "blur", "stride") if k in decode},
            "crop": {"detector": detector_for(provenance.get("task"))},  # as a shipped model of that task
            "provenance": provenance}


def card_from_metadata(metadata: Mapping[str, str], where: str) -> ModelCard:
    """The card in a model file's metadata (a version-1 card read into this version's keys)."""
    if METADATA_KEY in metadata:
        return ModelCard.from_dict(read_json(metadata, METADATA_KEY, where), where)
    if "dunet_config" in metadata or "train_config" in metadata:
        # dunet 0.1.0, before cards: the card follows from the training config.
        from dunet.engine.config import card_from_training

        return card_from_training(metadata, where)
    raise DunetError(f"{where}: no dunet model card in its metadata (not written by dunet?)")


def training_from_metadata(metadata: Mapping[str, str], where: str) -> dict | None:
    """The training config a model file carries beside its card, as JSON (None when it carries none)."""
    if TRAINING_KEY in metadata:
        return read_json(metadata, TRAINING_KEY, where)
    if "dunet_config" in metadata:  # dunet 0.1.0: the spec inside it
        return {k: v for k, v in read_json(metadata, "dunet_config", where).items() if k != "spec"}
    if "train_config" in metadata:  # dunet 0.1.0's ONNX files
        return read_json(metadata, "train_config", where)
    if METADATA_KEY in metadata:
        config = read_json(metadata, METADATA_KEY, where).get("config")  # a version-1 card held it
        return config if isinstance(config, dict) else None
    return None


def read_json(metadata: Mapping[str, str], key: str, where: str) -> dict:
    try:
        value = json.loads(metadata[key])
    except (TypeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise DunetError(f"{where}: its {key} metadata is damaged ({err})") from None
    if not isinstance(value, dict):
        raise DunetError(f"{where}: its {key} metadata is not a JSON object")
    return value
