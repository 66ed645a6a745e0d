"""Landmarks on videos: frames streamed from OpenCV one at a time, the object followed from frame to frame, a
per-frame CSV (DeepLabCut-like) and a labelled video.

    from dunet.video import process_video
    summary = process_video(dunet.load(), "clip.mp4", "out/", smooth=True)

Tracking: the box for the next frame is the box around this frame's landmarks (those scoring at least
`min_score`), so a face or an animal is followed without a detector on every frame; when the mean score drops
below `min_score` the object counts as lost and the next frame starts over (detector, given box or whole frame).
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dunet import DunetError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
MAX_FAILED_IN_A_ROW = 50  # then the rest of the file is taken as unreadable


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class FrameStats:
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frames: int = 0  # frames the file says it has (0 if unknown)
    yielded: int = 0
    failed: int = 0  # frames that did not decode, skipped


def read_frames(path: str | Path, *, every: int = 1, start: float = 0.0, end: float | None = None,
                stats: FrameStats | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in s, (H, W, 3) uint8 RGB) for every `every`-th frame from `start` to `end` seconds,
    decoded one at a time. Frames that fail to decode are skipped and counted in `stats.failed`."""
    import cv2

    path = Path(path)
    if every < 1:
        raise DunetError(f"--every {every}: must be at least 1")
    if start < 0 or (end is not None and end <= start):
        raise DunetError(f"--start {start} / --end {end}: need 0 <= start < end (seconds)")
    if not path.is_file():
        raise DunetError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DunetError(f"{path}: OpenCV cannot open this video (unknown or corrupt format)")
    stats = stats if stats is not None else FrameStats()
    fps = capture.get(cv2.CAP_PROP_FPS)
    stats.fps = fps if math.isfinite(fps) and fps > 0 else 30.0  # some containers do not say; 30 is common
    stats.width, stats.height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    stats.frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    try:
        index, first, failed_in_a_row = -1, None, 0
        while True:
            index += 1
            if not capture.grab():  # grab without converting: cheap for the frames --every skips
                # The end, or a frame that cannot be decoded in the middle: go on while the file says there is more.
                if index < stats.frames and failed_in_a_row < MAX_FAILED_IN_A_ROW:
                    stats.failed += 1
                    failed_in_a_row += 1
                    continue
                break
            time = index / stats.fps
            if time < start - 1e-9:
                continue
            if end is not None and time > end + 1e-9:
                break
            first = index if first is None else first
            if (index - first) % every:
                continue
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                stats.failed += 1
                failed_in_a_row += 1
                continue
            failed_in_a_row = 0
            stats.yielded += 1
            yield index, time, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class OneEuroFilter:
    """The One Euro filter (Casiez et al., CHI 2012): a low-pass filter whose cutoff rises with speed, so a
    still landmark stops jittering and a moving one does not lag. `min_cutoff` (Hz): less jitter when lower;
    `beta`: less lag when higher (per px/s of speed)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.previous: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self.previous = self.speed = self.time = None

    def __call__(self, value: np.ndarray, time: float) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.previous is None or self.time is None or time <= self.time:
            self.previous, self.speed, self.time = value, np.zeros_like(value), time
            return value.copy()
        dt = time - self.time
        speed = (value - self.previous) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.speed = a_d * speed + (1 - a_d) * self.speed
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        a = self._alpha(cutoff, dt)
        self.previous = a * value + (1 - a) * self.previous
        self.time = time
        return self.previous.copy()


def csv_header(names) -> list[str]:
    return ["frame", "time"] + [f"{name}_{part}" for name in names for part in ("x", "y", "score")]


@dataclass
class VideoSummary:
    video: str
    frames_predicted: int = 0
    frames_without_object: int = 0
    frames_failed: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = "".join([f", {self.frames_failed} frame(s) failed to decode and were skipped" if self.frames_failed else "",
                         f", {self.frames_without_object} without a face/object" if self.frames_without_object else ""])
        rate = self.frames_predicted / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.video}: {self.frames_predicted} frame(s) in {self.seconds:.1f} s ({rate:.1f} frames/s)"
                f"{extra} -> {', '.join(self.outputs)}")


def video_outputs(out_dir: Path, name: str) -> tuple[Path, Path]:
    """The per-frame CSV and the labelled video that `process_video` writes for a video named `name`."""
    return out_dir / f"{name}.csv", out_dir / f"{name}_labelled.mp4"


def _unlinked(path: Path) -> Path:
    """`path`, with a link there removed: an output replaces the link, never writes through it to a file elsewhere
    (as the images' outputs do, which are renamed into place)."""
    if path.is_symlink():
        path.unlink()
    return path


def process_video(landmarker, path: str | Path, out_dir: str | Path, *, name: str | None = None,
                  every: int = 1, start: float = 0.0, end: float | None = None, box=None,
                  smooth: bool = False, track: bool = True, min_score: float = 0.3,
                  labelled: bool = True, progress: bool = True) -> VideoSummary:
    """Predict every `every`-th frame of `path` from `start` to `end` s; write OUT/NAME.csv (frame, time, then
    x, y, score per landmark; empty cells where no object was found) and, with `labelled`, OUT/NAME_labelled.mp4.
    `box`: x, y, w, h of the object in the first frame (default: a detected face with detect_faces, else
    the whole frame). `smooth`: One Euro filter on the points."""
    import time as clock

    import cv2

    from dunet.api import check_box
    from dunet.data.draw import draw_overlay

    path, out_dir = Path(path), Path(out_dir)
    name = name or path.stem
    stats = FrameStats()
    frames = read_frames(path, every=every, start=start, end=end, stats=stats)
    summary = VideoSummary(str(path))
    spec = landmarker.spec
    smoother = OneEuroFilter() if smooth else None
    tracked = None
    writer = table = handle = bar = None
    began = clock.perf_counter()
    try:
        for index, time, rgb in frames:
            height, width = rgb.shape[:2]
            if handle is None:  # the first frame: outputs open only once there is something to write
                out_dir.mkdir(parents=True, exist_ok=True)
                if box is not None:
                    box = check_box(box, width, height)
                csv_path, video_path = video_outputs(out_dir, name)
                handle = open(_unlinked(csv_path), "w", newline="")
                table = csv.writer(handle)
                table.writerow(csv_header(landmarker.names))
                summary.outputs.append(str(csv_path))
                if labelled:
                    writer = cv2.VideoWriter(str(_unlinked(video_path)), cv2.VideoWriter_fourcc(*"mp4v"),
                                             max(stats.fps / every, 1.0), (width, height))
                    if not writer.isOpened():
                        raise DunetError(f"{video_path}: OpenCV cannot write an mp4 video here")
                    summary.outputs.append(str(video_path))
                if progress:
                    from tqdm import tqdm

                    total = None
                    if stats.frames:
                        last = stats.frames if end is None else min(stats.frames, int(end * stats.fps) + 1)
                        total = max(0, math.ceil((last - index) / every))
                    bar = tqdm(total=total, unit="frame", desc=path.name, disable=None)
            result = None
            if tracked is not None or box is not None:
                result = landmarker.predict(rgb, box=tracked if tracked is not None else box)
            else:
                result = landmarker.predict(rgb)  # the largest detected face, or the whole frame
            if result is not None and float(np.mean(result.scores)) < min_score and tracked is not None:
                tracked = None  # lost: start over on this frame rather than report a drifted box
                result = landmarker.predict(rgb, box=box)  # the given box, else the largest detected face
            row = [index, f"{time:.3f}"]
            if result is None:
                summary.frames_without_object += 1
                row += [""] * (3 * len(landmarker.names))
                tracked = None
                if smoother is not None:
                    smoother.reset()
            else:
                points = result.points
                if smoother is not None:
                    points = smoother(points, time).astype(np.float32)
                    result.points = points
                for (x, y), s in zip(points, result.scores):
                    row += [f"{x:.2f}", f"{y:.2f}", f"{s:.4f}"]
                tracked = _next_box(result, width, height, min_score) if track else None
            table.writerow(row)
            if writer is not None:
                canvas = rgb if result is None else draw_overlay(rgb, result.points, np.ones(len(result.points)), spec,
                                                                 scores=result.scores, palette="keypoint")
                writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            summary.frames_predicted += 1
            if bar is not None:
                bar.update(1)
        if handle is not None:
            handle.close()  # flushes: a full disk may show only here
    except OSError as err:  # a full disk, mostly: the outputs hold the frames before it, as after Ctrl-C
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
        raise DunetError(f"{out_dir / name}.csv: cannot write ({err.strerror or err}) after "
                         f"{summary.frames_predicted} frame(s); the outputs hold the frames before it") from None
    finally:
        if bar is not None:
            bar.close()
        if handle is not None:
            handle.close()
        if writer is not None:
            writer.release()
    summary.frames_failed = stats.failed
    summary.seconds = clock.perf_counter() - began
    if summary.frames_predicted == 0:
        detail = f" ({stats.failed} failed to decode)" if stats.failed else ""
        raise DunetError(f"{path}: no frames could be read{detail}"
                         + (f" between {start} and {end} s" if start or end is not None else ""))
    return summary


def _next_box(result, width: int, height: int, min_score: float):
    """The box to look in on the next frame, or None when the object is lost or has left the frame."""
    from dunet.api import box_around

    if float(np.mean(result.scores)) < min_score:
        return None
    box = box_around(result.points, result.scores, min_score)
    if box is None:
        return None
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None
    return box
