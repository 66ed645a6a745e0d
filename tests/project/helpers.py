"""A small project for the labeller's tests: 3 frames of dlc_openfield (or generated ones without the shared data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from dunet.project import new_project
from tests.conftest import SHARED_DATA

POINTS = ["snout", "leftear", "rightear", "tailbase"]
OPENFIELD = SHARED_DATA / "dlc_openfield" / "labeled-data" / "m4s1"


def small_project(folder: Path, frames: int = 3, points: list[str] = POINTS) -> Path:
    root = folder / "mouse"
    new_project(root, points, [(a, b) for a, b in [("snout", "leftear"), ("snout", "rightear")] if b in points])
    video = root / "labeled-data" / "m4s1"
    video.mkdir()
    for n in range(frames):
        name = f"img{n:04d}.png"
        if (OPENFIELD / name).is_file():
            shutil.copy(OPENFIELD / name, video / name)
        else:
            pixels = np.random.default_rng(n).integers(0, 256, (240, 320, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(video / name)
    return root
