"""Every kind of bad input gives an error naming the file and the problem, or is skipped and
counted with skip_bad (--skip-bad)."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dunet import DunetError
from dunet.data import open_source
from dunet.data.images import load_image
from dunet.data.spec import COCO17_FLIP, SPECS

from .helpers import face_points, write_coco, write_face, write_image, write_pts


def _expect_bad(text: str, file_name: str, problem: str, good: int, bad: int = 1):
    """Opening fails naming the file and the problem; with skip_bad the rest loads and the bad is counted."""
    with pytest.raises(DunetError) as caught:
        open_source(text)
    message = str(caught.value)
    assert file_name in message and problem in message, message
    source = open_source(text, skip_bad=True)
    assert len(source) == good and len(source.skipped) == bad
    assert file_name in source.skipped[0].path or file_name in source.skipped[0].problem
    return source


@pytest.fixture
def faces(tmp_path):
    """Two good 300-W style faces."""
    for i in range(2):
        write_face(tmp_path, f"good{i}", seed=i)
    return tmp_path


def test_corrupt_image(faces):
    (faces / "broken.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    write_pts(faces / "broken.pts", face_points())
    _expect_bad(f"300w:{faces}", "broken.jpg", "not an image file", good=2)


def test_truncated_image_is_found_when_decoded(faces):
    image, _ = write_face(faces, "cut", seed=5)
    image.write_bytes(image.read_bytes()[:2000])
    source = open_source(f"300w:{faces}")  # the header is intact: found when the pixels are read
    with pytest.raises(DunetError, match="cut.jpg: truncated image file"):
        load_image(image)
    assert len(source) == 3


def test_missing_image(faces):
    write_pts(faces / "lonely.pts", face_points())
    _expect_bad(f"300w:{faces}", "lonely.pts", "missing image", good=2)


def test_missing_annotation(faces):
    write_image(faces / "unlabelled.jpg")
    _expect_bad(f"300w:{faces}", "unlabelled.jpg", "missing annotation", good=2)


def test_wrong_number_of_points(faces):
    write_face(faces, "short", points=face_points()[:67])
    _expect_bad(f"300w:{faces}", "short.pts", "expected 68 keypoints, found 67", good=2)
    write_pts(faces / "short.pts", face_points()[:67], header=False)
    _expect_bad(f"300w:{faces}", "short.pts", "expected 68 keypoints, found 67", good=2)
    text = (faces / "good0.pts").read_text().replace("n_points: 68", "n_points: 69")
    (faces / "short.pts").write_text(text)
    _expect_bad(f"300w:{faces}", "short.pts", "header says n_points: 69 but the file has 68 points", good=2)


def test_nan_coordinates(faces):
    points = face_points()
    points[10] = np.nan
    write_face(faces, "nan", points=points)
    _expect_bad(f"300w:{faces}", "nan.pts", "keypoint 10 is not a number", good=2)


def test_point_left_of_the_image_is_kept_and_one_far_left_is_refused(faces):
    points = face_points()
    points[3, 0] = -40  # a third of the 120 px image past the left edge: a truncated face, still a real point
    write_face(faces, "neg", points=points)
    assert len(open_source(f"300w:{faces}")) == 3
    points[3, 0] = -500  # four image widths away: not a point of this image
    write_face(faces, "neg", points=points)
    _expect_bad(f"300w:{faces}", "neg.pts", "keypoint 3 at (-500.0, ", good=2)


def test_points_far_outside_the_image(faces):
    points = face_points()
    points[5] = [900, 40]  # image is 120 x 120
    write_face(faces, "far", points=points)
    _expect_bad(f"300w:{faces}", "far.pts", "far outside the 120x120 image", good=2)


def test_point_just_outside_the_image_is_accepted(faces):
    points = face_points()
    points[5] = [-0.8, 121.0]
    write_face(faces, "edge", points=points)
    assert len(open_source(f"300w:{faces}")) == 3


def test_unparseable_pts(faces):
    (faces / "junk.pts").write_text("version: 1\nn_points: 68\n{\n1.0 two\n}\n")
    write_image(faces / "junk.jpg")
    _expect_bad(f"300w:{faces}", "junk.pts", "line 4: not numbers", good=2)


def test_pts_without_header_is_read(faces):
    write_pts(faces / "plain.pts", face_points(), header=False)
    write_image(faces / "plain.jpg")
    source = open_source(f"300w:{faces}")
    plain = next(s for s in source.samples if s.image_path.endswith("plain.jpg"))
    np.testing.assert_allclose(plain.keypoints, face_points(), atol=1e-3)


def test_grayscale_rgba_palette_and_16_bit_images_are_converted(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    sixteen = (np.arange(600, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (20, 30, 3) and gray.dtype == np.uint8
    assert (gray == rgb[:, :, :1]).all()
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
    assert load_image(tmp_path / "palette.png").shape == (20, 30, 3)
    deep = load_image(tmp_path / "deep.png")
    assert deep.shape == (20, 30, 3) and deep.dtype == np.uint8
    np.testing.assert_array_equal(deep[:, :, 0], np.round(sixteen / 257.0).astype(np.uint8))  # 65535 -> 255


def test_images_of_any_mode_train(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(120, 120, 3), dtype=np.uint8)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "a.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(tmp_path / "b.png")
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 250)).save(tmp_path / "c.png")
    for name in "abc":
        write_pts(tmp_path / f"{name}.pts", face_points())
    from dunet.data import LandmarkDataset

    dataset = LandmarkDataset(open_source(f"300w:{tmp_path}"), 64)
    assert all(dataset[i]["image"].shape == (3, 64, 64) for i in range(3)) and not dataset.bad


def test_missing_image_file(tmp_path):
    with pytest.raises(DunetError, match="nothing.png: image file not found"):
        load_image(tmp_path / "nothing.png")


def test_empty_folder(tmp_path):
    with pytest.raises(DunetError, match="empty"):
        open_source(f"300w:{tmp_path}")


def test_everything_bad_is_an_error_even_when_skipping(tmp_path):
    write_pts(tmp_path / "a.pts", face_points())
    with pytest.raises(DunetError, match="no usable samples; all 1 items are bad"):
        open_source(f"300w:{tmp_path}", skip_bad=True)


def test_coco_annotations_pointing_at_missing_images(tmp_path):
    write_image(tmp_path / "here.jpg")
    path = write_coco(tmp_path, ["here.jpg", "gone.jpg"], instances_per_image=2)
    source = _expect_bad(f"coco:{path}", "gone.jpg", "image file not found", good=2, bad=2)
    assert all("gone.jpg" in b.path for b in source.skipped)


def test_coco_image_id_listed_for_two_files_labels_neither(tmp_path):
    """The annotation of one image landed on another that shared its id; `data check` said nothing."""
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / name)
    path = write_coco(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    data = json.loads(path.read_text())
    data["images"][1]["id"] = 1
    data["images"].append(dict(data["images"][2]))  # the same entry twice is harmless
    path.write_text(json.dumps(data))
    source = _expect_bad(f"coco:{path}", "keypoints.json annotation 100",
                         "image id 1 is listed for several files in 'images' (a.jpg, b.jpg)", good=1, bad=2)
    assert source.samples[0].image_path.endswith("c.jpg")


def _coco_with_edited_annotation(tmp_path, instances: int, index: int, key: str, value):
    """A COCO file of one image with `instances` people whose annotation `index` has `key` set to `value`."""
    write_image(tmp_path / "here.jpg")
    path = write_coco(tmp_path, ["here.jpg"], instances_per_image=instances)
    data = json.loads(path.read_text())
    data["annotations"][index][key] = value(data["annotations"][index][key]) if callable(value) else value
    path.write_text(json.dumps(data))
    return path, data


def test_coco_annotation_with_unknown_image_id(tmp_path):
    path, _ = _coco_with_edited_annotation(tmp_path, 2, 1, "image_id", 99)
    _expect_bad(f"coco:{path}", "keypoints.json annotation 101", "image id 99 is not listed", good=1)


def test_coco_wrong_number_of_keypoints(tmp_path):
    path, _ = _coco_with_edited_annotation(tmp_path, 3, 2, "keypoints", lambda keypoints: keypoints[:-3])
    _expect_bad(f"coco:{path}", "annotation 102", "expected 17 keypoints", good=2)


def test_coco_nan_and_negative_keypoints(tmp_path):
    path, data = _coco_with_edited_annotation(tmp_path, 3, 1, "keypoints", lambda k: k[:3] + [-2.0] + k[4:])
    assert len(open_source(f"coco:{path}")) == 3  # 2 px left of the image: kept
    data["annotations"][1]["keypoints"][3] = -1e5
    path.write_text(json.dumps(data))
    _expect_bad(f"coco:{path}", "annotation 101", "far outside", good=2)
    data["annotations"][1]["keypoints"][3] = float("nan")
    path.write_text(json.dumps(data))  # Python writes NaN, which json.load reads back
    _expect_bad(f"coco:{path}", "annotation 101", "not a number", good=2)


@pytest.mark.parametrize("flag", [7, 1.5, -1, float("nan")])
def test_coco_visibility_flag_other_than_0_1_2_is_a_bad_item(tmp_path, flag):
    """7 and 1.5 were read as labelled points."""
    path, _ = _coco_with_edited_annotation(tmp_path, 2, 1, "keypoints", lambda k: k[:5] + [flag] + k[6:])
    _expect_bad(f"coco:{path}", "annotation 101", f"keypoint 1 has visibility {flag:g}; COCO's flags are 0", good=1)


def test_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DunetError, match="broken.json: not valid JSON"):
        open_source(f"coco:{path}")
    with pytest.raises(DunetError, match="broken.json: not valid JSON"):
        open_source(f"mpii:{path}")


def test_coco_without_keypoint_annotations(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DunetError, match="empty.json: the data set is empty"):
        open_source(f"coco:{path}")


def test_mpii_entry_problems(tmp_path):
    write_image(tmp_path / "p.jpg", 200, 200)
    good = {"image": "p.jpg", "joints": [[50 + i, 60 + i] for i in range(16)], "joints_vis": [1] * 16,
            "center": [100, 100], "scale": 0.5}
    missing = {k: v for k, v in good.items() if k != "scale"}
    short = dict(good, joints=good["joints"][:15])
    gone = dict(good, image="gone.jpg")
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps([good, missing]))
    _expect_bad(f"mpii:{path}", "mpii.json entry 1", "missing 'scale'", good=1)
    path.write_text(json.dumps([good, short]))
    _expect_bad(f"mpii:{path}", "mpii.json entry 1", "expected 16 joints", good=1)
    path.write_text(json.dumps([good, gone]))
    _expect_bad(f"mpii:{path}", "gone.jpg", "image file not found", good=1)


def test_lsp_problems(tmp_path):
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.zeros((2, 14, 3))})
    with pytest.raises(DunetError, match="joints.mat: 'joints' has shape"):
        open_source(f"lsp:{tmp_path}")
    joints = np.zeros((3, 14, 2))
    joints[:2] = 20.0
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    write_image(tmp_path / "images" / "im0001.jpg")
    _expect_bad(f"lsp:{tmp_path}", "im0002.jpg", "missing image", good=1)
    (tmp_path / "joints.mat").write_bytes(b"garbage")
    with pytest.raises(DunetError, match="joints.mat: cannot read MATLAB file"):
        open_source(f"lsp:{tmp_path}")


def test_dlc_problems(tmp_path):
    write_image(tmp_path / "labeled-data" / "v" / "img0.png")
    write_image(tmp_path / "labeled-data" / "v" / "img1.png")
    header = "scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n"
    csv_path = tmp_path / "labeled-data" / "v" / "CollectedData_me.csv"
    csv_path.write_text(header + "labeled-data/v/img0.png,10,12,,\nlabeled-data/v/img1.png,abc,3,4,5\n")
    source = _expect_bad(f"dlc:{csv_path}", "CollectedData_me.csv row 5", "expected numbers or empty cells", good=1)
    assert source.samples[0].visible.tolist() == [1.0, 0.0]  # empty cells: unlabelled
    csv_path.write_text("scorer,me,me,me,me\nindividuals,a,a,b,b\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n"
                        "labeled-data/v/img0.png,1,2,3,4\n")
    with pytest.raises(DunetError, match="individual 'b' has body parts"):
        open_source(f"dlc:{csv_path}")
    csv_path.write_text("just,some,csv\n1,2,3\n")
    with pytest.raises(DunetError, match="not a DeepLabCut CollectedData CSV"):
        open_source(f"dlc:{csv_path}")


def test_two_images_of_one_name_are_not_guessed_between(faces):
    write_face(faces, "twin")
    write_image(faces / "twin.png")
    _expect_bad(f"300w:{faces}", "twin.pts", "several images share its name (twin.jpg, twin.png)", good=2)


def _coco_file(tmp_path, edit):
    write_image(tmp_path / "here.jpg")
    path = write_coco(tmp_path, ["here.jpg"], instances_per_image=2)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("field", ["image_id", "category_id"])
def test_coco_ids_given_as_lists_are_refused(tmp_path, field):
    def edit(data):
        for ann in data["annotations"][: 1 if field == "image_id" else None]:
            ann[field] = [ann[field]]

    path = _coco_file(tmp_path, edit)
    if field == "image_id":
        _expect_bad(f"coco:{path}", "keypoints.json annotation 100", "image id [1] is not listed", good=1)
    else:
        with pytest.raises(DunetError, match="keypoints.json: category_id \\[1\\] is not a number or string"):
            open_source(f"coco:{path}")


def test_coco_image_entry_with_a_list_id_is_a_bad_item(tmp_path):
    path = _coco_file(tmp_path, lambda data: data["images"].append({"id": [7], "file_name": "x.jpg"}))
    _expect_bad(f"coco:{path}", "keypoints.json images[1]", "needs an 'id'", good=2)


def test_coco_category_id_not_among_the_categories_is_refused(tmp_path):
    def edit(data):
        for ann in data["annotations"]:
            ann["category_id"] = 5

    path = _coco_file(tmp_path, edit)
    with pytest.raises(DunetError, match="keypoints.json: the annotations' category_id 5 is not among the categories"):
        open_source(f"coco:{path}")


@pytest.mark.parametrize("edit, problem", [
    (lambda c: c["keypoints"].__setitem__(2, "left_eye"), "the name 'left_eye' is given twice (keypoints 1 and 2)"),
    (lambda c: c.update(flip_pairs=[[0, 99]]), "bad flip pair (0, 99) for 17 keypoints"),
    (lambda c: c.update(flip_pairs=[[2, 3], [4, 5]]), "flip_pairs [[2, 3], [4, 5]] are not the left/right pairs"),
])
def test_coco_keypoint_names_given_twice_or_flip_pairs_that_contradict_them_are_refused(tmp_path, edit, problem):
    """A name given twice switched flipping off without a word; flip_pairs beside the COCO-17 names were ignored."""
    path = _coco_file(tmp_path, lambda data: edit(data["categories"][0]))
    with pytest.raises(DunetError) as caught:
        open_source(f"coco:{path}")
    assert "keypoints.json: " in str(caught.value) and problem in str(caught.value)
    path = _coco_file(tmp_path, lambda data: data["categories"][0].update(flip_pairs=[[2, 1], [3, 4]]
                                                                        + [[a, b] for a, b in COCO17_FLIP[2:]]))
    assert open_source(f"coco:{path}").spec == SPECS["coco"]  # the pairs it has, in any order: fine


@pytest.mark.parametrize("edit", [lambda data: data.pop("categories"), lambda data: data.update(categories=[]),
                                  lambda data: data["categories"][0].pop("keypoints")])
def test_coco_17_points_without_names_are_coco_17(tmp_path, edit):
    """Without a category the names became kp0..kp16 and COCO-17's flip pairs were lost."""
    assert open_source(f"coco:{_coco_file(tmp_path, edit)}").spec == SPECS["coco"]
    write_image(tmp_path / "here.jpg")
    other = write_coco(tmp_path, ["here.jpg"], k=5, names=[])  # no known set of 5: generic names, flip off
    assert open_source(f"coco:{other}").spec.keypoints == ("kp0", "kp1", "kp2", "kp3", "kp4")


def _dlc(tmp_path, header: str, row: str = "labeled-data/v/img0.png,1,2,3,4\n"):
    write_image(tmp_path / "labeled-data" / "v" / "img0.png")
    path = tmp_path / "labeled-data" / "v" / "CollectedData_me.csv"
    path.write_text(header + row)
    return path


@pytest.mark.parametrize("header, problem", [
    # the coords row short by a body part: that part was dropped without a word
    ("scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y\n", "bodyparts header row has 5 cells but the coords row has 3"),
    ("scorer,me,me,me,me\nbodyparts,nose,nose,tail\ncoords,x,y,x,y\n", "bodyparts header row has 4 cells"),
    ("scorer,me,me,me,me\nindividuals,a,a,a\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n",
     "individuals header row has 4 cells"),
])
def test_dlc_short_header_rows_are_refused(tmp_path, header, problem):
    path = _dlc(tmp_path, header)
    with pytest.raises(DunetError, match=problem) as caught:
        open_source(f"dlc:{path}")
    assert "CollectedData_me.csv" in str(caught.value)


@pytest.mark.parametrize("parts, problem", [
    ("nose,nose,leftear,leftear,leftear,leftear", "the name 'leftear' is given twice (body parts 1 and 2)"),
    ("nose,nose,,,tail,tail", "body part 1 has an empty name"),
])
def test_dlc_body_part_named_twice_or_not_at_all_is_refused(tmp_path, parts, problem):
    """Both were accepted: the points of one name went to either label, and flipping was switched off."""
    path = _dlc(tmp_path, f"scorer,me,me,me,me,me,me\nbodyparts,{parts}\ncoords,x,y,x,y,x,y\n",
                "labeled-data/v/img0.png,1,2,3,4,5,6\n")
    with pytest.raises(DunetError) as caught:
        open_source(f"dlc:{path}")
    assert f"{path}: bodyparts row: {problem}" in str(caught.value)


def test_dlc_h5_points_to_the_csv_beside_it(tmp_path):
    """DeepLabCut's .h5 (pandas in HDF5: reading it needs pandas and PyTables) failed with "cannot read CSV"."""
    path = _dlc(tmp_path, "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n", "labeled-data/v/img0.png,1,2\n")
    h5 = path.with_suffix(".h5")
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(DunetError) as caught:
        open_source(f"dlc:{h5}")
    assert str(caught.value) == (f"{h5}: an HDF5 file (DeepLabCut's .h5), which dunet does not read; give the CSV "
                                 f"that DeepLabCut writes beside it: dlc:{path}")
    path.unlink()
    with pytest.raises(DunetError, match="give the CSV that DeepLabCut writes beside it: its CollectedData_me.csv"):
        open_source(f"dlc:{h5}")


def test_dlc_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    path = _dlc(tmp_path, "\ufeffscorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n", "labeled-data/v/img0.png,1,2\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert open_source(f"dlc:{path}").spec.keypoints == ("nose",)


def test_dlc_row_cut_short_is_a_bad_item(tmp_path):
    path = _dlc(tmp_path, "scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n",
                "labeled-data/v/img0.png,1,2,3,4\nlabeled-data/v/img0.png,1,2,3\n")
    _expect_bad(f"dlc:{path}", "CollectedData_me.csv row 5", "has 4 cells, the header has 5", good=1)


def test_dlc_row_with_cells_to_spare_is_a_bad_item(tmp_path):
    """An unquoted comma in a path shifts every value under the wrong name; empty trailing cells are fine."""
    path = _dlc(tmp_path, "scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n",
                "labeled-data/v/img0.png,1,2,3,4,,\nlabeled-data/v/img,0.png,1,2,3,4\n")
    _expect_bad(f"dlc:{path}", "CollectedData_me.csv row 5", "has 6 cells, the header has 5", good=1)


@pytest.mark.parametrize("text", ["synthetic:100000000", "synthetic:10:0:100000", "synthetic:10:-1"])
def test_absurd_synthetic_sizes_are_refused(text):
    with pytest.raises(DunetError, match="need 1 <= N <= 100,000, SEED >= 0 and 16 <= SIZE <= 4096"):
        open_source(text)


def test_data_check_does_not_decode_images_at_full_size(tmp_path, monkeypatch):
    """A 12,000 px scan took 1.6 GB to check; the check reads JPEGs at 1/8 scale, PNGs not at all."""
    from dunet.commands.data import check_source
    from dunet.data import images

    write_face(tmp_path, "a")
    cut, _ = write_face(tmp_path, "cut", seed=5)
    cut.write_bytes(cut.read_bytes()[:2000])
    monkeypatch.setattr(images, "load_image", lambda *a, **k: pytest.fail("decoded at full size"))
    report = check_source(f"300w:{tmp_path}")
    assert report["samples"] == 1 and report["bad"][0]["problem"] == "truncated image file"
    big = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 4000)).save(big)
    sizes = []
    real_load = Image.Image.load

    def load(self):
        sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", load)
    images.check_image(big)
    assert max(sizes) == (500, 500)


def _png(width: int, height: int, *chunks: tuple[bytes, bytes]) -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunk(*c) for c in chunks) + chunk(b"IEND", b"")


def test_data_check_finds_a_png_whose_pixels_are_missing_or_cut_off(tmp_path):
    """A 20000x20000 PNG header with no pixel data passed `data check`; eval and predict then failed on it."""
    import zlib

    from dunet.commands.data import check_source

    write_face(tmp_path, "a")
    cut = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 120, 3), np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2] + _png(1, 1)[-12:])  # IEND after half the data
    (tmp_path / "empty.png").write_bytes(_png(20000, 20000, (b"IDAT", b"")))
    (tmp_path / "none.png").write_bytes(_png(20000, 20000))
    (tmp_path / "junk.png").write_bytes(_png(120, 120, (b"IDAT", b"not zlib data")))
    (tmp_path / "short.png").write_bytes(_png(120, 120, (b"IDAT", zlib.compress(bytes(1000)))))
    for name in ("cut", "empty", "none", "junk", "short"):
        write_pts(tmp_path / f"{name}.pts", face_points())
    report = check_source(f"300w:{tmp_path}")
    problems = {Path(b["path"]).stem: b["problem"] for b in report["bad"]}
    assert report["samples"] == 1 and sorted(problems) == ["cut", "empty", "junk", "none", "short"], problems
    assert problems["empty"] == problems["none"] == "truncated image file (pixel data for 0 % of the image)"
    assert problems["cut"].startswith("truncated image file") and problems["junk"].startswith("corrupt image")


def test_data_check_refuses_a_float_image_as_training_would(tmp_path):
    from dunet.commands.data import check_source

    write_face(tmp_path, "a")
    write_pts(tmp_path / "f.pts", face_points())
    Image.fromarray(np.zeros((120, 120), np.float32)).save(tmp_path / "f.tif")
    report = check_source(f"300w:{tmp_path}")
    assert report["samples"] == 1 and "floating-point images are not supported" in report["bad"][0]["problem"]
