"""Videos analysed in DeepLabCut's layout and the frames where a model is likely wrong (`dunet.analysis`)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import dunet
from dunet.analysis import analyse_video, median_filter, pick_outliers, suspicion
from dunet.cli import main
from dunet.data.readers import read_dlc_labels


@pytest.fixture(scope="module")
def pose():
    return dunet.load("lsp-dunet4", backend="torch", threads=1)


def test_analyse_writes_tables_in_deeplabcut_layout_a_labelled_video_and_plots(pose, clip, tmp_path):
    result = analyse_video(pose, clip, tmp_path, filter="median", progress=False)
    assert result.points.shape == (40, 14, 2) and result.scores.shape == (40, 14)
    assert result.frames.tolist() == list(range(40)) and result.frames_per_second > 0
    names = {p.split("/")[-1] for p in result.outputs}
    assert {"clip.csv", "clip_labelled.mp4", "clip_dlc.csv", "clip_dlc.h5"} <= names
    assert len([n for n in names if n.startswith("clip_trajectory_")]) == 14
    with open(tmp_path / "clip_dlc.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["scorer", "dunet"] and rows[2][1:4] == ["x", "y", "likelihood"] and len(rows) == 43
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    table = pd.read_hdf(tmp_path / "clip_dlc.h5")  # as DeepLabCut's own files are read
    assert list(table.columns.names) == ["scorer", "bodyparts", "coords"] and table.shape == (40, 42)
    np.testing.assert_allclose(table[("dunet", pose.names[0], "x")].to_numpy(), result.points[:, 0, 0])


def test_median_filter_removes_a_one_frame_jump_and_keeps_steady_motion():
    track = np.stack([np.arange(20.0), np.zeros(20)], axis=1)[:, None, :]
    spiky = track.copy()
    spiky[10, 0] = [200.0, 200.0]
    np.testing.assert_allclose(median_filter(spiky)[3:17], track[3:17], atol=1.0)  # a ramp: within one step


def test_suspicion_finds_low_scores_jumps_and_broken_lengths():
    n = 60
    t = np.arange(n, dtype=float)
    body = np.stack([np.stack([100 + t, 100 + 0 * t], 1), np.stack([140 + t, 100 + 0 * t], 1),
                     np.stack([120 + t, 130 + 0 * t], 1)], axis=1)  # three points moving together
    scores = np.full((n, 3), 0.9)
    scores[10, 1] = 0.1  # low score
    body[30, 2] += [80.0, 0.0]  # a one-frame jump, which also breaks two lengths
    body[50, 1] = body[50, 0] + [5.0, 0.0]  # a squashed body in place
    signs = suspicion(body, scores)
    assert signs["score"][10] > 0 and signs["jump"][30] >= 1 and signs["length"][50] >= 1
    assert pick_outliers(signs, 3) == [10, 30, 50]
    assert max(s[:5].max() for s in signs.values()) < 0.5  # steady frames stay unsuspected


def own_model(tmp_path):
    """lsp-dunet4 as a user's own model is: its card names no detector, so the whole frame is the crop."""
    import dataclasses

    from dunet.checkpoint import save_checkpoint
    from dunet.engine.inference import load_torch_model

    shipped = load_torch_model("lsp-dunet4")
    card = dataclasses.replace(shipped.card, detector=None)
    return save_checkpoint(tmp_path / "own.safetensors", shipped.model, card, config=shipped.config)


def test_outliers_are_written_into_the_project_with_the_models_points(clip, tmp_path, capsys):
    project = tmp_path / "p"
    assert main(["outliers", str(own_model(tmp_path)), str(clip), "--count", "4", "--project", str(project),
                 "--backend", "torch", "--threads", "1"]) == 0
    assert "suspect frame(s)" in capsys.readouterr().out
    images = sorted((project / "labeled-data" / "clip").glob("img*.png"))
    labels = read_dlc_labels(project / "labeled-data" / "clip" / "machinelabels.csv")
    rows = labels.frames
    assert 1 <= len(images) <= 4 and labels.scorer == "machine" and len(labels.names) == 14
    assert sorted(rows) == [f"labeled-data/clip/{p.name}" for p in images]
    assert all(np.isfinite(points).all() for points in rows.values())


def test_analyse_cli_reports_frames_per_second_and_bad_videos_in_one_line(clip, tmp_path, capsys):
    assert main(["analyse", "--model", "lsp-dunet4", str(clip), "--out", str(tmp_path / "a"), "--backend", "torch",
                 "--threads", "1", "--no-video", "--no-plots", "--filter", "oneeuro"]) == 0
    assert "frames/s" in capsys.readouterr().out
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    assert main(["analyse", "--model", "lsp-dunet4", str(broken), "--out", str(tmp_path / "a"),
                 "--backend", "torch", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0]


def test_videos_with_the_same_file_name_get_outputs_of_their_own(clip, tmp_path, capsys):
    videos = []
    for folder in ("a", "b"):  # two sessions, each with its clip.mp4
        (tmp_path / folder).mkdir()
        videos.append(tmp_path / folder / "clip.mp4")
        videos[-1].symlink_to(clip)
    out = tmp_path / "out"
    assert main(["analyse", "--model", "lsp-dunet4", *map(str, videos), "--out", str(out), "--backend", "torch",
                 "--threads", "1", "--no-video", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert f"{videos[0]} -> a_clip" in printed and f"{videos[1]} -> b_clip" in printed  # it says so
    for name in ("a_clip", "b_clip"):
        assert len((out / f"{name}.csv").read_text().splitlines()) == 41  # 40 frames each, none overwritten
        assert (out / f"{name}_dlc.csv").is_file()
    assert not (out / "clip.csv").exists()


def test_output_names_are_the_file_names_unless_they_clash():
    from dunet.analysis import output_names

    assert output_names(["x/m3v1.mp4", "y/m4s1.avi"]) == ["m3v1", "m4s1"]
    # The same name in folders of the same name, and names that differ only in case or extension.
    assert output_names(["x/a/v.mp4", "y/a/v.mp4", "z/V.avi", "w.mp4"]) == ["a_v", "a_v_2", "z_V", "w"]
