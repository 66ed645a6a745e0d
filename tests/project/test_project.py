"""`dunet project`: new folders in DeepLabCut's layout, DeepLabCut's own folders adopted as they are."""

import shutil

import pytest
import yaml

from dunet.cli import main
import numpy as np

from dunet import DunetError
from dunet.data.readers import DlcLabels, read_dlc, read_dlc_labels, write_dlc_labels
from dunet.project import new_project, open_project
from tests.project.helpers import POINTS, small_project


def test_new_project_is_laid_out_as_deeplabcut_does(tmp_path):
    video = tmp_path / "clip.mp4"
    _write_video(video)
    project = new_project(tmp_path / "mouse", POINTS, [("snout", "tailbase")], [video], scorer="Ana")
    config = yaml.safe_load((tmp_path / "mouse" / "config.yaml").read_text())
    assert config["bodyparts"] == POINTS and config["skeleton"] == [["snout", "tailbase"]]
    assert config["scorer"] == "Ana" and config["video_sets"] == {str(video): {"crop": "0, 64, 0, 48"}}
    csv = tmp_path / "mouse" / "labeled-data" / "clip" / "CollectedData_Ana.csv"
    assert csv.read_text().splitlines() == [
        "scorer,,," + ",".join(["Ana"] * 8),
        "bodyparts,,," + ",".join(p for p in POINTS for _ in "xy"),
        "coords,,," + ",".join(["x", "y"] * 4)]
    assert project.videos == ["clip"] and read_dlc_labels(csv).frames == {}
    (tmp_path / "day2").mkdir()
    shutil.copy(video, tmp_path / "day2" / "clip.mp4")
    with pytest.raises(DunetError, match="another video is also named clip"):
        new_project(tmp_path / "two", POINTS, videos=[video, tmp_path / "day2" / "clip.mp4"])


def _write_video(path):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for n in range(3):
        writer.write(np.full((48, 64, 3), 40 * n, np.uint8))
    writer.release()


def test_a_deeplabcut_project_is_adopted_and_written_back_byte_for_byte(shared_data, tmp_path):
    root = tmp_path / "openfield"
    shutil.copytree(shared_data / "dlc_openfield", root, ignore=shutil.ignore_patterns("videos"))
    project = open_project(root)
    assert project.points == POINTS and project.scorer == "Pranav" and len(project.frames()) == 116
    csv = root / "labeled-data" / "m4s1" / "CollectedData_Pranav.csv"
    before = csv.read_bytes()
    project.save_labels("m4s1", project.labels("m4s1"))
    assert csv.read_bytes() == before
    assert len(read_dlc(csv).samples) == 116


def test_labels_written_in_the_new_layout_read_back(tmp_path):
    root = small_project(tmp_path)
    project = open_project(root)
    labels = project.labels("m4s1")
    labels.frames["labeled-data/m4s1/img0001.png"] = np.array([[10.5, 20.25], [np.nan, np.nan], [3, 4], [5, 6]])
    project.save_labels("m4s1", labels)
    samples = read_dlc(project.label_file("m4s1")).samples
    assert len(samples) == 1 and samples[0].visible.tolist() == [1, 0, 1, 1]
    assert samples[0].keypoints[0].tolist() == [10.5, 20.25]


@pytest.mark.parametrize("args, problem", [
    (["project", "show", "{tmp}/nowhere"], "nowhere: project folder not found"),
    (["label", "{tmp}/nowhere"], "nowhere: project folder not found"),
    (["project", "new", "{tmp}/p", "--points", "a,a"], "give distinct names"),
    (["project", "new", "{tmp}/p", "--points", "a,b", "--skeleton", "a-c"], "skeleton edge a-c"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, problem):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1


def test_labels_naming_points_the_config_lacks_are_one_line(tmp_path, capsys):
    root = small_project(tmp_path)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["bodyparts"] = ["snout", "leftear"]
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    labels = DlcLabels("dunet", POINTS, {"labeled-data/m4s1/img0000.png": np.ones((4, 2))})
    write_dlc_labels(root / "labeled-data/m4s1/CollectedData_dunet.csv", labels)  # names all four
    for args in (["project", "show", str(root)], ["label", str(root), "--port", "0"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "labels name points the config does not: rightear, tailbase" in err
        assert len(err.strip().splitlines()) == 1


def test_a_csv_written_by_deeplabcut_on_windows_names_the_same_frames(tmp_path):
    from dunet.labeller import Labeller

    root = small_project(tmp_path)
    csv = root / "labeled-data/m4s1/CollectedData_dunet.csv"
    csv.write_text("scorer,dunet,dunet\nbodyparts,snout,snout\ncoords,x,y\nlabeled-data\\m4s1\\img0001.png,4.5,6\n")
    labeller = Labeller(open_project(root))
    assert labeller.missing_images() == []
    labeller.set_points("labeled-data/m4s1/img0001.png", {"leftear": [1, 2]})
    frames = read_dlc_labels(csv).frames
    assert list(frames) == ["labeled-data/m4s1/img0001.png"]  # one row, not a second one for the same image
    assert frames["labeled-data/m4s1/img0001.png"][:2].tolist() == [[4.5, 6], [1, 2]]


def test_a_coco_file_is_adopted_as_a_project_that_train_reads(shared_data, tmp_path, capsys):
    """`dunet project new NAME --coco FILE`: points and skeleton from the category, one frame per annotated
    person (an image with several cut into crops), labels where the pixels are, readable by `train --data`."""
    from dunet.data.images import load_image
    from dunet.data.readers import combine_sources, open_source
    from dunet.project import project_data

    coco = shared_data / "fixtures" / "coco" / "test_coco.json"
    assert main(["project", "new", str(tmp_path / "people"), "--coco", str(coco)]) == 0
    out = capsys.readouterr().out
    assert "17 points (nose, left_eye" in out and "14 annotated instance(s) of 4 image(s)" in out
    project = open_project(tmp_path / "people")
    assert project.skeleton[0] == ("left_ankle", "left_knee")  # COCO's 1-based [16, 14]
    original = open_source(f"coco:{coco}")
    adopted = combine_sources([open_source(name) for name in project_data(tmp_path / "people")])
    assert len(adopted) == len(original) == len(project.frames()) == 14
    by_frame = {}
    for sample in original.samples:  # the images, and each person's place in them
        by_frame.setdefault(sample.image_path, []).append(sample)
    labelled = [s for s in adopted.samples if s.visible.any()]
    for frame in labelled:
        stem = frame.image_path.rsplit("/", 1)[1].split(".")[0]
        image, _, number = stem.partition("_")
        source = by_frame[str(coco.parent / f"{image}.jpg")][int(number or 1) - 1]
        assert frame.visible.tolist() == source.visible.tolist()
        shift = source.keypoints[source.visible > 0] - frame.keypoints[frame.visible > 0]
        assert np.allclose(shift, shift[0]), stem  # one offset: the crop's corner
        x0, y0 = shift[0].astype(int)
        crop, whole = load_image(frame.image_path), load_image(source.image_path)
        assert (crop == whole[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]).all(), stem
    assert len(labelled) == 12  # two annotations label no point: frames to label
    assert main(["project", "new", str(tmp_path / "again"), "--coco", str(coco), "--points", "a,b"]) == 2
    assert "leave out --points" in capsys.readouterr().err
    assert main(["project", "new", str(tmp_path / "again"), "--coco", f"coco:{coco}:{coco.parent}"]) == 0  # as --data
    assert len(open_project(tmp_path / "again").frames()) == 14


def test_a_bad_coco_file_is_one_line_and_leaves_no_project(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": []}')
    assert main(["project", "new", str(tmp_path / "p"), "--coco", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "p").exists()
