"""Landmarks on videos: frames streamed from OpenCV one at a time, the object followed from frame to frame, a
per-frame CSV (DeepLabCut-like) and a labelled video.

    from dunet.video import process_video
    summary = process_video(dunet.load(), "clip.mp4", "out/", smooth=True)

Tracking: the box for the next frame is the box around this frame's landmarks (those scoring at least
`min_score`), so a face or an animal is followed without a detector on every frame; when the mean score drops
below `min_score` the object counts as lost and the next frame starts over (detector, given box or whole frame).

People (a pose model, `people=N`): up to N people are followed at once, each with an id of its own that it
keeps while it is tracked. The person detector runs on the first frame, whenever fewer than N people are
followed (at most every REDETECT_EVERY frames while someone still is), and a new person is one whose box
overlaps no followed person's.
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
from dunet.runtime.backends import import_optional

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
MAX_FAILED_IN_A_ROW = 50  # then the rest of the file is taken as unreadable
REDETECT_EVERY = 10  # predicted frames between looks for more people while some are followed (18 detector passes)
SAME_PERSON_IOU = 0.3  # a detected box overlapping a followed person's this much is that person


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
    cv2 = import_optional("cv2")  # the `video` extra

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


def csv_header(names, people: int = 1) -> list[str]:
    """frame, time, then x, y, score per landmark; for several people, an id column and the landmarks per person
    slot (person0_id, person0_NAME_x, ...): a person keeps its slot while it is followed."""
    landmarks = [f"{name}_{part}" for name in names for part in ("x", "y", "score")]
    if people == 1:
        return ["frame", "time"] + landmarks
    return ["frame", "time"] + [f"person{p}_{column}" for p in range(people) for column in ["id"] + landmarks]


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
                  labelled: bool = True, progress: bool = True, people: int = 1) -> VideoSummary:
    """Predict every `every`-th frame of `path` from `start` to `end` s; write OUT/NAME.csv (frame, time, then
    x, y, score per landmark; empty cells where no object was found) and, with `labelled`, OUT/NAME_labelled.mp4.
    `box`: x, y, w, h of the object in the first frame (default: the face or person `Landmarker.predict` picks
    from those the model's detector finds, else the whole frame). `smooth`: One Euro filter on the points.
    `people`: with a pose model, follow up to this many people, each with an id (`PeopleTracker`; the CSV has a
    column group per person: `csv_header`)."""
    import time as clock

    cv2 = import_optional("cv2")  # the `video` extra

    from dunet.api import check_box
    from dunet.data.draw import draw_overlay

    path, out_dir = Path(path), Path(out_dir)
    name = name or path.stem
    if not isinstance(people, int) or people < 1:
        raise DunetError(f"--people {people}: must be a whole number of at least 1")
    if people > 1 and (landmarker.finds != "person" or box is not None):
        raise DunetError(f"--people {people}: following several people needs a pose model that finds them itself "
                         f"(this one finds {landmarker.finds or 'nothing'}) and no --box")
    crowd = PeopleTracker(landmarker, people, min_score, track) if people > 1 else None
    smoothers: dict[int, OneEuroFilter] = {}
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
                table.writerow(csv_header(landmarker.names, people))
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
            if crowd is not None:
                followed = crowd.step(rgb)
                row = [index, f"{time:.3f}"]
                for slot in followed:
                    if slot is None:
                        row += [""] * (1 + 3 * len(landmarker.names))
                        continue
                    person, result = slot
                    if smooth:
                        result.points = smoothers.setdefault(person, OneEuroFilter())(result.points, time).astype(
                            np.float32)
                    row.append(person)
                    for (x, y), s in zip(result.points, result.scores):
                        row += [f"{x:.2f}", f"{y:.2f}", f"{s:.4f}"]
                summary.frames_without_object += not any(followed)
                table.writerow(row)
                if writer is not None:
                    canvas = rgb
                    for _, result in filter(None, followed):
                        canvas = draw_overlay(canvas, result.points, np.ones(len(result.points)), spec,
                                              scores=result.scores, palette="keypoint")
                    writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                summary.frames_predicted += 1
                if bar is not None:
                    bar.update(1)
                continue
            result = None
            if tracked is not None or box is not None:
                result = landmarker.predict(rgb, box=tracked if tracked is not None else box)
            else:
                result = landmarker.predict(rgb)  # the detected face or person `predict` picks, or the whole frame
            if result is not None and float(np.mean(result.scores)) < min_score and tracked is not None:
                tracked = None  # lost: start over on this frame rather than report a drifted box
                result = landmarker.predict(rgb, box=box)  # the given box, else the one `predict` picks
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


class PeopleTracker:
    """Up to `limit` people followed from frame to frame, each in a slot with an id of its own (0, 1, ...: a
    person lost and found again gets a new one). Each frame: every followed person is predicted in the box
    around its previous joints; a person whose mean score drops below `min_score` is lost. The person detector
    runs when a slot is free (every frame while nobody is followed, else every REDETECT_EVERY frames), or on
    every frame without `track`; a person it finds that overlaps no followed person takes a free slot (without
    `track`, the slot of the person of the previous frame it overlaps, so ids carry on)."""

    def __init__(self, landmarker, limit: int, min_score: float = 0.3, track: bool = True):
        self.landmarker, self.limit, self.min_score, self.track = landmarker, limit, min_score, track
        self.slots: list[tuple[int, tuple] | None] = [None] * limit  # (id, box to look in next) per slot
        self.next_id = 0
        self.since_detect = 0

    def step(self, rgb: np.ndarray) -> list:
        """Per slot, (id, Landmarks) of the person followed in it on this frame, or None."""
        from dunet.api import box_around

        height, width = rgb.shape[:2]
        out: list = [None] * self.limit
        followed = [i for i, slot in enumerate(self.slots) if slot is not None] if self.track else []
        if followed:
            results = self.landmarker.predict(rgb, boxes=[self.slots[i][1] for i in followed])
            for i, result in zip(followed, results):
                if float(np.mean(result.scores)) >= self.min_score:
                    out[i] = (self.slots[i][0], result)
        self.since_detect += 1
        free = [i for i in range(self.limit) if out[i] is None]
        if free and (not self.track or not any(out) or self.since_detect >= REDETECT_EVERY):
            self.since_detect = 0
            taken = [box_around(r.points) for _, r in filter(None, out)]
            # The quick search: it looks again every REDETECT_EVERY frames, and a person missed in one frame is
            # found in a later one.
            for result in self.landmarker.predict_all(rgb, thorough=False):
                found = box_around(result.points)
                if found is None or any(_iou(found, box) > SAME_PERSON_IOU for box in taken):
                    continue  # someone already followed
                slot = self._slot_for(found, out)
                if slot is None:
                    break
                if self.slots[slot] is not None and _iou(found, self.slots[slot][1]) > SAME_PERSON_IOU:
                    person = self.slots[slot][0]  # the person of the previous frame, found again
                else:
                    person, self.next_id = self.next_id, self.next_id + 1
                out[slot] = (person, result)
                taken.append(found)
        for i in range(self.limit):
            box = _next_box(out[i][1], width, height, self.min_score) if out[i] is not None else None
            self.slots[i] = None if box is None else (out[i][0], box)
        return out

    def _slot_for(self, found, out) -> int | None:
        """A free slot for a person found at `found`: the one whose previous person it overlaps, else an empty one."""
        free = [i for i in range(self.limit) if out[i] is None]
        for i in free:
            if self.slots[i] is not None and _iou(found, self.slots[i][1]) > SAME_PERSON_IOU:
                return i
        empty = [i for i in free if self.slots[i] is None] or free
        return empty[0] if empty else None


def _iou(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(a[2] * a[3] + b[2] * b[3] - ix * iy, 1e-9)


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
