"""`dunet predict` with a pose model on photos of people: it finds them itself, one or (--all) every one per
image, and names the images where it found nobody."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from dunet.cli import main
from tests.test_api import lsp_scene


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    scene, _ = lsp_scene(shared_data, 2, 6)
    Image.fromarray(scene).save(folder / "two.png")
    Image.new("RGB", (320, 240), (128, 128, 128)).save(folder / "nobody.png")
    return folder


def test_predict_finds_people_and_names_the_photos_without_any(photos, tmp_path, capsys):
    out = tmp_path / "largest"
    assert main(["predict", "--model", "pose", str(photos), "--out", str(out), "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert "no person found in 1 image(s), no overlay written: nobody.png" in said
    images = {e["image"].rsplit("/", 1)[-1]: e for e in json.loads((out / "predictions.json").read_text())["images"]}
    assert images["nobody.png"]["instances"] == [] and len(images["two.png"]["instances"]) == 1  # the largest
    assert 0.5 <= images["two.png"]["instances"][0]["detection_score"] <= 1.0

    every = tmp_path / "every"
    assert main(["predict", "--model", "pose", str(photos), "--all", "--out", str(every), "--threads", "1"]) == 0
    instances = next(e for e in json.loads((every / "predictions.json").read_text())["images"]
                     if e["image"].endswith("two.png"))["instances"]
    assert len(instances) >= 2
    with open(every / "predictions.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["image"].endswith("two.png")]
    assert [int(row["instance"]) for row in rows] == list(range(len(instances)))
    assert all(0.5 <= float(row["detection_score"]) <= 1.0 for row in rows)
    assert (every / "two_landmarks.png").is_file() and not (every / "nobody_landmarks.png").exists()


def test_a_box_outside_the_photo_is_one_line(photos, tmp_path, capsys):
    code = main(["predict", "--model", "pose", str(photos / "nobody.png"), "--box", "400,10,50,80",
                 "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "nobody.png: box 400,10,50,80: outside the 320x240 image" in err
