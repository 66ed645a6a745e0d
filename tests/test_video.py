"""Video: frames streamed, --every / --start / --end, the per-frame CSV, a labelled video, tracking,
smoothing and one-line errors for bad files."""

from __future__ import annotations

import csv
import re
import tracemalloc

import numpy as np
import pytest

from dunet import DunetError
from dunet.video import OneEuroFilter, csv_header, process_video, read_frames
from tests.test_api import tiny_landmarker

cv2 = pytest.importorskip("cv2")
FPS = 10.0


def write_video(path, count: int = 12, size: int = 96) -> None:
    """A tiny video of dunet's generated faces (a different face per frame)."""
    from dunet.data.synthetic import render_face

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (size, size))
    assert writer.isOpened()
    for i in range(count):
        writer.write(cv2.cvtColor(render_face(5, i, size=size), cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "faces.avi"
    write_video(path)
    return path


@pytest.fixture(scope="module")
def tiny():
    return tiny_landmarker()


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_has_a_row_per_frame_and_x_y_score_per_landmark(tiny, video, tmp_path):
    summary = process_video(tiny, video, tmp_path, progress=False)
    table = rows(tmp_path / "faces.csv")
    assert table[0] == csv_header(tiny.names) and len(table[0]) == 2 + 3 * 68
    assert table[0][:5] == ["frame", "time", f"{tiny.names[0]}_x", f"{tiny.names[0]}_y", f"{tiny.names[0]}_score"]
    assert [int(r[0]) for r in table[1:]] == list(range(12))
    assert float(table[2][1]) == pytest.approx(1 / FPS)
    scores = np.array([[float(v) for v in r[4::3]] for r in table[1:]])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert summary.frames_predicted == 12 and summary.frames_failed == 0
    labelled = cv2.VideoCapture(str(tmp_path / "faces_labelled.mp4"))
    assert labelled.isOpened() and int(labelled.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_every_start_and_end_pick_frames(tiny, video, tmp_path):
    process_video(tiny, video, tmp_path, every=3, progress=False, labelled=False)
    assert [int(r[0]) for r in rows(tmp_path / "faces.csv")[1:]] == [0, 3, 6, 9]
    process_video(tiny, video, tmp_path, name="part", start=0.4, end=0.8, every=2, progress=False, labelled=False)
    assert [int(r[0]) for r in rows(tmp_path / "part.csv")[1:]] == [4, 6, 8]
    assert not (tmp_path / "faces_labelled.mp4").exists()


def test_frames_are_streamed_not_held(video):
    frames = read_frames(video)
    first = next(frames)  # a generator: decoding starts only when asked
    assert first[0] == 0 and first[2].shape == (96, 96, 3)
    tracemalloc.start()
    count = 1
    for _ in frames:
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    frame_bytes = 96 * 96 * 3
    assert count == 12 and peak < 4 * frame_bytes  # all 11 frames would be 11x


def test_tracking_uses_the_previous_landmarks_as_the_next_box(tiny, video, tmp_path):
    seen = []
    real = tiny._run

    def spy(jobs):
        jobs = list(jobs)
        seen.extend(found[0] for _, boxes in jobs for found in boxes)
        return real(jobs)

    tiny._run = spy
    try:
        process_video(tiny, video, tmp_path, box=(20, 20, 50, 50), every=4, min_score=0.0, progress=False,
                      labelled=False)
    finally:
        del tiny._run
    assert seen[0] == (20.0, 20.0, 50.0, 50.0)
    assert all(box != seen[0] for box in seen[1:])  # later frames look where the landmarks were


def test_bad_videos_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(DunetError, match="no such video"):
        list(read_frames(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DunetError, match="junk.mp4"):
        process_video(tiny, junk, tmp_path, progress=False)
    empty = tmp_path / "empty.avi"
    write_video(empty, count=2)
    with pytest.raises(DunetError, match="no frames"):
        process_video(tiny, empty, tmp_path, start=5.0, progress=False)
    with pytest.raises(DunetError, match="outside the 96x96 image"):
        process_video(tiny, empty, tmp_path, box=(200, 200, 10, 10), progress=False)
    with pytest.raises(DunetError, match="--every"):
        list(read_frames(empty, every=0))


def test_a_full_disk_is_one_line_that_says_how_far_it_got(tiny, video, tmp_path):
    from tests.full_disk import full_disk

    with full_disk(tmp_path, 5000), pytest.raises(DunetError) as caught:
        process_video(tiny, video, tmp_path, labelled=False, progress=False)
    done = int(re.fullmatch(rf"{tmp_path / 'faces'}.csv: cannot write \(No space left on device\) after (\d+) "
                            r"frame\(s\); the outputs hold the frames before it", str(caught.value))[1])
    table = rows(tmp_path / "faces.csv")
    assert 0 < done < 12 and [len(row) for row in table[:done + 1]] == [2 + 3 * 68] * (done + 1)


def corrupt_frame(path, frame: int) -> None:
    """Blank the JPEG data of one frame of an MJPG video in place, as a damaged file has it."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG start markers
    begin, end = starts[frame], starts[frame + 1]
    data[begin:end - 16] = bytes(end - 16 - begin)  # keep the container's chunk header of the next frame intact
    path.write_bytes(bytes(data))


def test_a_frame_that_fails_to_decode_mid_video_is_skipped_and_counted(tiny, tmp_path):
    damaged = tmp_path / "damaged.avi"
    write_video(damaged)
    corrupt_frame(damaged, 5)
    summary = process_video(tiny, damaged, tmp_path, progress=False)
    assert summary.frames_failed == 1 and summary.frames_predicted == 11
    assert [int(r[0]) for r in rows(tmp_path / "damaged.csv")[1:]] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert "1 frame(s) failed to decode" in summary.line()


def test_one_euro_filter_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    still = OneEuroFilter()
    noisy = 50 + rng.normal(0, 2, size=(100, 1, 2))
    out = np.array([still(p, t / 30) for t, p in enumerate(noisy)])
    assert out[20:].std() < 0.5 * noisy[20:].std()
    moving = OneEuroFilter()
    track = np.array([[[t * 3.0, 0.0]] for t in range(100)])
    out = np.array([moving(p, t / 30) for t, p in enumerate(track)])
    assert abs(out[-1, 0, 0] - track[-1, 0, 0]) < 15  # lags a little, not seconds


def test_outputs_replace_links_and_leave_the_files_they_point_to(tiny, video, tmp_path):
    """The CSV and the labelled video were written through a link in the output folder, to a file elsewhere."""
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("faces.csv", "faces_labelled.mp4"):
        (out / name).symlink_to(elsewhere)
    process_video(tiny, video, out, every=4, progress=False)
    assert elsewhere.read_text() == "keep me" and not any(p.is_symlink() for p in out.iterdir())
    assert len(rows(out / "faces.csv")) == 4


def test_a_pose_model_follows_each_person_with_an_id(shared_data, tmp_path):
    """Two LSP people walking right by 4 px a frame: two slots, the same id in each on every frame, and each
    person's joints where they are."""
    import dunet
    from tests.test_api import lsp_scene, torso_errors

    scene, truths = lsp_scene(shared_data, 2, 6)
    path = tmp_path / "two.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, scene.shape[1::-1])
    for i in range(5):
        writer.write(cv2.cvtColor(np.roll(scene, 4 * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    pose = dunet.load("pose", threads=1)
    summary = process_video(pose, path, tmp_path, people=3, labelled=False, progress=False)
    table = rows(tmp_path / "two.csv")
    assert table[0] == csv_header(pose.names, 3) and summary.frames_predicted == 5
    width = 1 + 3 * 14
    first_ids = None
    for frame, row in enumerate(table[1:]):
        slots = [row[2 + p * width: 2 + (p + 1) * width] for p in range(3)]
        ids = [slot[0] for slot in slots]
        first_ids = first_ids or ids
        assert ids == first_ids and sorted(filter(None, ids))[:2] == ["0", "1"]  # each keeps its slot and id
        people = [np.array(slot[1:], float).reshape(14, 3)[:, :2] for slot in slots if slot[0]]
        for joints in truths:  # both people, where they are on this frame
            moved = joints + [4 * frame, 0]
            assert min(np.median(torso_errors(p, moved)) for p in people) < 0.3
    with pytest.raises(DunetError, match="--people 2: following several people needs a pose model"):
        process_video(tiny_landmarker(), path, tmp_path, people=2, progress=False)
