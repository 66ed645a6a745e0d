"""DeepLabCut project folders (`dunet.project`): frames picked for labelling, label files merged for training,
and their bad input, each one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from dunet import DunetError
from dunet.cli import main
from dunet.data.readers import DlcLabels, read_dlc, read_dlc_labels, write_dlc_labels
from dunet.project import extract_frames, frame_name, pick_frames, project_data


def make_project(root, parts=("snout", "tail"), skeleton=(("snout", "tail"),)):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"Task": "t", "scorer": "me", "bodyparts": list(parts),
                                                      "skeleton": [list(e) for e in skeleton]}))
    return root


@pytest.mark.parametrize("method", ["kmeans", "uniform"])
def test_frames_are_spread_over_the_video_and_written_as_deeplabcut_names_them(clip, tmp_path, method):
    picked = pick_frames(clip, 8, method)
    assert len(picked) == 8 == len(set(picked)) and picked == sorted(picked)
    assert picked[-1] - picked[0] >= 20  # spread, not the first 8 frames
    paths = extract_frames(clip, 8, method, tmp_path / "project")
    assert [p.name for p in paths] == [frame_name(i, 40) for i in picked]
    assert all(p.parent == tmp_path / "project" / "labeled-data" / "clip" and p.is_file() for p in paths)
    assert frame_name(7, 40) == "img07.png" and frame_name(42, 2330) == "img0042.png"


def test_frames_cli_and_its_bad_input_one_line_each(clip, tmp_path, capsys):
    assert main(["frames", str(clip), "--count", "5", "--out", str(tmp_path / "p")]) == 0
    assert len(list((tmp_path / "p" / "labeled-data" / "clip").glob("img*.png"))) == 5
    assert main(["frames", str(clip), "--count", "41", "--out", str(tmp_path / "p")]) == 2
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    assert main(["frames", str(broken), "--out", str(tmp_path / "p")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "--count 41 but the video has 40 frames" in lines[0] and str(clip) in lines[0]
    assert str(broken) in lines[1] and "Traceback" not in "".join(lines)


def test_a_written_label_file_reads_back_as_deeplabcut_labels(tmp_path):
    root = make_project(tmp_path / "p")
    folder = root / "labeled-data" / "v"
    folder.mkdir(parents=True)
    import cv2

    for name in ("img01.png", "img02.png"):
        cv2.imwrite(str(folder / name), np.zeros((60, 80, 3), np.uint8))
    rows = {"labeled-data/v/img01.png": np.array([[10, 20], [30, 40.5]]),
            "labeled-data/v/img02.png": np.array([[np.nan, np.nan], [5, 6]])}
    write_dlc_labels(folder / "CollectedData_me.csv", DlcLabels("me", ["snout", "tail"], rows))
    back = read_dlc_labels(folder / "CollectedData_me.csv")
    assert back.scorer == "me" and back.names == ["snout", "tail"]
    np.testing.assert_allclose(back.frames["labeled-data/v/img01.png"], rows["labeled-data/v/img01.png"])
    source = read_dlc(folder / "CollectedData_me.csv")
    assert len(source) == 2 and source.samples[1].visible.tolist() == [0.0, 1.0]
    assert project_data(root) == [f"dlc:{folder / 'CollectedData_me.csv'}:{root}"]


def test_labels_naming_points_the_config_does_not_are_one_line_naming_the_file(tmp_path, capsys):
    root = make_project(tmp_path / "p")
    bad = root / "labeled-data" / "v" / "CollectedData_me.csv"
    write_dlc_labels(bad, DlcLabels("me", ["snout", "paw"], {"labeled-data/v/img1.png": np.array([[1.0, 2], [3, 4]])}))
    with pytest.raises(DunetError, match="paw"):
        project_data(root)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "paw" in err[0]


def test_frames_of_a_projects_video_go_into_that_project(clip, tmp_path):
    root = make_project(tmp_path / "p")
    (root / "videos").mkdir()
    video = clip.rename(root / "videos" / "mouse.mp4")
    paths = extract_frames(video, 3, "uniform")
    assert [p.parent for p in paths] == [root.resolve() / "labeled-data" / "mouse"] * 3
