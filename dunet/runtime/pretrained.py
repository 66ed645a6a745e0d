"""Pretrained models shipped inside the package (dunet/pretrained/): one `.safetensors` file each
(config and model card in its metadata), for some an OpenVINO int8 IR too, and an index, `models.json`."""

from __future__ import annotations

import json
from pathlib import Path

from dunet import DunetError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def _index() -> dict:
    index = PRETRAINED_DIR / "models.json"
    return json.loads(index.read_text()) if index.is_file() else {"models": []}


def is_pretrained_name(target: str) -> bool:
    """Whether `target` (a command's model argument) names a pretrained model rather than a path: it is no
    existing file and holds no path separator or dot."""
    return not Path(target).exists() and not any(c in target for c in "/\\.")


def list_pretrained() -> list[dict]:
    return _index()["models"]


def default_models() -> dict[str, str]:
    """The model each task's name stands for ("face" -> the fast face model): what `dunet.load()` and
    `--model face` run."""
    return _index().get("defaults", {})


def pretrained_entry(name: str) -> dict:
    """The index entry of a pretrained model, by its name or by a task's name (`default_models`)."""
    index = _index()
    defaults = index.get("defaults", {})
    name = defaults.get(name, name)
    for entry in index["models"]:
        if entry["name"] == name:
            return entry
    names = ", ".join([*defaults, *(e["name"] for e in index["models"])]) or "none are installed"
    raise DunetError(f"{name!r} is neither an existing file nor a pretrained model (pretrained: {names})")


def recorded_figures(validation: str) -> tuple[dict[str, str], int]:
    """A card's validation line as written: "nme_io 3.57, fr_0.08 0.008 on 121 held-out samples (...)" ->
    ({"nme_io": "3.57", ...}, 121). Figures of the flip test ("pck_0.2 with flip 78.93") are left out."""
    figures, _, rest = validation.partition(" on ")
    pairs = [item.rsplit(" ", 1) for item in figures.split(", ")]
    return {key: value for key, value in pairs if " " not in key}, int(rest.split()[0])


def held_out_source(name: str, data_root: str | Path) -> str:
    """FORMAT:PATH of the copy under `data_root` of the data a pretrained model held its validation split out of
    (the split comes off the first training source), e.g. "300w:../shared/data/300w"."""
    from dunet.card import training_from_metadata
    from dunet.engine.config import config_from_dict
    from dunet.runtime.weights import read_weights

    path = resolve_pretrained(name)
    train = config_from_dict(training_from_metadata(read_weights(path)[0], str(path))).data.train[0]
    kind, path = train.split(":", 1)
    return f"{kind}:{Path(data_root) / Path(path).name}"


def _shipped_file(name: str, file: str) -> Path:
    path = PRETRAINED_DIR / file
    if not path.is_file():
        raise DunetError(f"pretrained model {name!r}: its file {path} is missing from the installation")
    return path


def resolve_pretrained(name: str) -> Path:
    return _shipped_file(name, pretrained_entry(name)["file"])


def path_or_pretrained(source: str | Path) -> Path:
    """`source` itself if it exists (a checkpoint, run directory or model file), else the shipped model so named."""
    return Path(source) if Path(source).exists() else resolve_pretrained(str(source))


def shipped_openvino_int8(name: str) -> Path | None:
    """The OpenVINO int8 IR (.xml, its .bin beside it) shipped with a pretrained model, or None. A fast model
    ships one because int8 needs calibration images, which a user's machine may not have; OpenVINO runs it
    when it is the backend (`dunet.runtime.model.load_model`)."""
    int8 = pretrained_entry(name).get("openvino_int8")
    if int8 is None:
        return None
    _shipped_file(name, str(Path(int8["file"]).with_suffix(".bin")))
    return _shipped_file(name, int8["file"])
