"""Pretrained models shipped inside the package (dunet/pretrained/): one `.safetensors` file each
(config and model card in its metadata) and an index, `models.json`."""

from __future__ import annotations

import json
from pathlib import Path

from dunet import DunetError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def list_pretrained() -> list[dict]:
    index = PRETRAINED_DIR / "models.json"
    if not index.is_file():
        return []
    return json.loads(index.read_text())["models"]


def resolve_pretrained(name: str) -> Path:
    for entry in list_pretrained():
        if entry["name"] == name:
            path = PRETRAINED_DIR / entry["file"]
            if not path.is_file():
                raise DunetError(f"pretrained model {name!r}: its file {path} is missing from the installation")
            return path
    names = ", ".join(e["name"] for e in list_pretrained()) or "none are installed"
    raise DunetError(f"{name!r} is neither an existing file nor a pretrained model (pretrained: {names})")
