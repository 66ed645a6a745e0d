"""The model card: what a model file says about its model, enough to rebuild, run and score it.

Every model file dunet writes carries the same card, one JSON object under the metadata key `dunet_card`:
checkpoint directories (in their `model.safetensors`, with a `card.json` copy to read), single `.safetensors`
models, packed files and ONNX / OpenVINO files (whose metadata keys carry a `dunet.` prefix). Its keys:

    card_version  CARD_VERSION; a card from a newer dunet is refused with a line saying so
    config        the resolved training config (dunet.engine.config): `model` builds the network, `data`
                  says which split was held out
    spec          the landmark set (dunet.data.spec): names, flip pairs, normaliser, what the metrics score
    heads         what each supervised head outputs, in output order: "regression" or "detection" heatmaps
    decode        the heatmap codec: input size, stride, sigma, sub-pixel refinement, blur
    provenance    the dunet and torch versions and date it was written, the held-out `metrics`, and the notes
                  of a shipped model (`dunet export --card`: data, recipe, validation)

`heads` and `decode` follow from `config`; they are written out for readers that do not parse it (another
runtime running the ONNX file). Files written before the card, by dunet 0.1.0, held the training config
with the spec inside it (metadata `dunet_config` and `dunet_meta`; in ONNX `train_config` and `spec`):
`card_from_metadata` reads them into a card too.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from dunet import DunetError, __version__
from dunet.data.spec import DatasetSpec, spec_from_dict, spec_to_dict
from dunet.engine.config import TrainConfig, config_from_dict, config_to_dict

CARD_VERSION = 1
METADATA_KEY = "dunet_card"


@dataclass(frozen=True)
class ModelCard:
    config: TrainConfig
    spec: DatasetSpec
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spec.num_keypoints != self.config.model.landmarks:
            raise DunetError(f"the model card disagrees with itself: {self.spec.num_keypoints} keypoint names "
                             f"but model.landmarks {self.config.model.landmarks}")

    @property
    def heads(self) -> tuple[str, ...]:
        """What each supervised head outputs, in output order (the last one is what inference decodes)."""
        return tuple(self.config.supervision_per_head(self.config.model.heads))

    @property
    def decode(self) -> dict:
        """The settings of the config's heatmap codec."""
        codec = self.config.codec
        return {**dataclasses.asdict(codec), "stride": codec.stride}

    def stamped(self, **provenance) -> ModelCard:
        """The card as it is written now: its provenance gets the dunet and torch versions, the date and
        `provenance` (e.g. metrics=...)."""
        import torch

        written = {"dunet_version": __version__, "torch_version": torch.__version__,
                   "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        return dataclasses.replace(self, provenance={**self.provenance, **written, **provenance})

    def to_dict(self) -> dict:
        return {"card_version": CARD_VERSION, "config": config_to_dict(self.config), "spec": spec_to_dict(self.spec),
                "heads": list(self.heads), "decode": self.decode, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict, where: str = "model card") -> ModelCard:
        version = data.get("card_version")
        if not isinstance(version, int) or version < 1:
            raise DunetError(f"{where}: not a dunet model card (card_version {version!r})")
        if version > CARD_VERSION:
            raise DunetError(f"{where}: its model card is from a newer dunet (card version {version}, this one "
                             f"reads {CARD_VERSION}); upgrade dunet")
        missing = [key for key in ("config", "spec") if not isinstance(data.get(key), dict)]
        if missing:
            raise DunetError(f"{where}: its model card is incomplete: no {' and no '.join(missing)}")
        return _card(data["config"], data["spec"], data.get("provenance") or {}, where)

    def to_metadata(self) -> dict[str, str]:
        """The card as a model file's metadata (string keys and values)."""
        return {METADATA_KEY: json.dumps(self.to_dict())}


def card_from_metadata(metadata: Mapping[str, str], where: str) -> ModelCard:
    """The card in a model file's metadata, or the one a file written before cards implies."""
    if METADATA_KEY in metadata:
        return ModelCard.from_dict(_json(metadata, METADATA_KEY, where), where)
    if "dunet_config" in metadata:  # dunet 0.1.0: a .safetensors model, a checkpoint's model file, a packed file
        config = _json(metadata, "dunet_config", where)
        meta = _json(metadata, "dunet_meta", where) if "dunet_meta" in metadata else {}
        provenance = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
        spec = config.pop("spec", None)
    elif "train_config" in metadata:  # dunet 0.1.0: an ONNX file or OpenVINO IR
        config, provenance = _json(metadata, "train_config", where), {}
        spec = _json(metadata, "spec", where) if "spec" in metadata else None
    else:
        raise DunetError(f"{where}: no dunet model card in its metadata (not written by dunet?)")
    if spec is None:
        raise DunetError(f"{where}: its model card is incomplete: no landmark spec")
    return _card(config, spec, provenance, where)


def _json(metadata: Mapping[str, str], key: str, where: str) -> dict:
    try:
        value = json.loads(metadata[key])
    except (TypeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise DunetError(f"{where}: its {key} metadata is damaged ({err})") from None
    if not isinstance(value, dict):
        raise DunetError(f"{where}: its {key} metadata is not a JSON object")
    return value


def _card(config: dict, spec: dict, provenance: dict, where: str) -> ModelCard:
    try:
        train_config = config_from_dict(config)
    except DunetError as err:
        raise DunetError(f"{where}: its config is not a dunet training config ({err})") from None
    try:
        landmarks = spec_from_dict(spec)
    except (KeyError, TypeError, ValueError, DunetError) as err:
        raise DunetError(f"{where}: its landmark spec is damaged ({type(err).__name__}: {err})") from None
    try:
        return ModelCard(train_config, landmarks, provenance)
    except DunetError as err:
        raise DunetError(f"{where}: {err}") from None
