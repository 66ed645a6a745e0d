"""Small builders of on-disk test data (written into pytest's tmp_path, never into the repo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dunet.data.spec import SPECS


def face_points(width: int = 120, height: int = 120) -> np.ndarray:
    """68 plausible 0-based face points inside a width x height image (the synthetic face template)."""
    from dunet.data.synthetic import face_geometry

    points = face_geometry(0, 0, 128).keypoints.astype(np.float64)
    return points * min(width, height) / 128.0


def write_image(path: Path, width: int = 120, height: int = 120, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_pts(path: Path, points: np.ndarray, header: bool = True, one_based: bool = True) -> Path:
    values = np.asarray(points, dtype=np.float64) + (1.0 if one_based else 0.0)
    lines = [f"{x:.3f} {y:.3f}" for x, y in values]
    if header:
        lines = ["version: 1", f"n_points: {len(values)}", "{", *lines, "}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_face(folder: Path, name: str, points: np.ndarray | None = None, **image_args) -> tuple[Path, Path]:
    """NAME.jpg + NAME.pts (official header, 1-based) in `folder`."""
    image = write_image(folder / f"{name}.jpg", **image_args)
    pts = write_pts(folder / f"{name}.pts", face_points() if points is None else points)
    return image, pts


def write_coco(folder: Path, files: list[str], instances_per_image: int = 1, k: int = 17,
               names: list[str] | None = None) -> Path:
    """A COCO keypoints file for images `files` (which may or may not exist)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i, name in enumerate(files):
        images.append({"id": i + 1, "file_name": name, "width": 120, "height": 120})
        for j in range(instances_per_image):
            points = rng.uniform(20, 100, size=(k, 2))
            triples = np.concatenate([points, np.full((k, 1), 2.0)], axis=1)
            annotations.append({
                "id": 100 * (i + 1) + j, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "keypoints": triples.reshape(-1).round(2).tolist(), "num_keypoints": k,
                "bbox": [15.0, 15.0, 90.0, 90.0],
            })
    if names is None and k == 17:
        names = list(SPECS["coco"].keypoints)
    category = {"id": 1, "name": "person", "keypoints": names or []}
    path = folder / "keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return path
