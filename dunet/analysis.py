"""Videos analysed as DeepLabCut users expect, and the frames where the model is likely wrong.

    import dunet
    from dunet.analysis import analyse_video, find_outliers
    mouse = dunet.load("runs/mouse")
    result = analyse_video(mouse, "videos/m3v1.mp4", "analysed/", filter="median")
    result.points, result.scores        # (frames, K, 2), (frames, K)
    find_outliers(mouse, "videos/m3v1.mp4", count=20, project="my_project")

`analyse_video` runs `dunet.video.process_video` (the per-frame CSV and labelled video of `dunet predict`)
and adds DeepLabCut's table layout (CSV always, HDF5 with the `dlc` extra), optional filtering and a
trajectory plot per body part. Frames are predicted whole, one by one, as a model trained on DeepLabCut
frames saw them in training (no tracking box).
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.runtime.backends import import_optional

FILTERS = ("none", "median", "oneeuro")
MEDIAN_WINDOW = 5  # frames: removes a one- or two-frame jump without smearing real motion at 30 fps
SCORER = "dunet"


@dataclass
class Analysis:
    video: str
    names: tuple[str, ...]
    frames: np.ndarray  # (N,) frame indices
    points: np.ndarray  # (N, K, 2) x, y in frame pixels, NaN where nothing was found
    scores: np.ndarray  # (N, K) in [0, 1], 0 where nothing was found
    fps: float = 30.0
    seconds: float = 0.0  # the whole analysis, reading the video to the last plot
    outputs: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.video}: {len(self.frames)} frame(s) in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} frames/s) -> {', '.join(self.outputs)}")


def read_video_csv(path: str | Path, names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, points, scores) of the per-frame CSV `process_video` writes (empty cells -> NaN / 0)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    k = len(names)
    frames = np.array([int(r[0]) for r in rows], np.int64)
    values = np.array([[float(v) if v else np.nan for v in r[2:2 + 3 * k]] for r in rows], np.float64).reshape(-1, k, 3)
    return frames, values[..., :2], np.nan_to_num(values[..., 2], nan=0.0)


def median_filter(points: np.ndarray, window: int = MEDIAN_WINDOW) -> np.ndarray:
    """Each coordinate replaced by the median over `window` frames centred on it (NaN frames left out)."""
    half = window // 2
    padded = np.pad(points, ((half, half), (0, 0), (0, 0)), mode="edge")
    stacked = np.stack([padded[i:i + len(points)] for i in range(window)])
    with _quiet():
        filtered = np.nanmedian(stacked, axis=0)
    return np.where(np.isnan(points), np.nan, filtered)


@contextmanager
def _quiet():
    """"All-NaN slice" warnings off: a frame with no object anywhere near has no median, and NaN says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def dlc_table_rows(analysis: Analysis, scorer: str = SCORER) -> list[list[str]]:
    """DeepLabCut's analysed-video table: header rows scorer / bodyparts / coords (x, y, likelihood), then
    the frame index and x, y, likelihood per body part (empty where nothing was found)."""
    names = analysis.names
    rows = [["scorer"] + [scorer] * (3 * len(names)),
            ["bodyparts"] + [n for n in names for _ in range(3)],
            ["coords"] + ["x", "y", "likelihood"] * len(names)]
    for frame, points, scores in zip(analysis.frames, analysis.points, analysis.scores):
        row = [str(int(frame))]
        for (x, y), s in zip(points, scores):
            row += ["", "", ""] if not (math.isfinite(x) and math.isfinite(y)) else [f"{x:.2f}", f"{y:.2f}", f"{s:.4f}"]
        rows.append(row)
    return rows


def write_dlc_csv(analysis: Analysis, path: Path) -> Path:
    import io

    from dunet.files import atomic_write_file

    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\n").writerows(dlc_table_rows(analysis))
    atomic_write_file(path, text.getvalue().encode(), what="the analysis table")
    return path


def write_dlc_h5(analysis: Analysis, path: Path, scorer: str = SCORER) -> Path | None:
    """DeepLabCut's HDF5 file (a pandas HDFStore written by PyTables, key "df_with_missing", columns
    scorer / bodyparts / coords), readable by `pandas.read_hdf` as DeepLabCut's own files are. None without
    pandas and PyTables (`pip install dunet[dlc]`): the CSV holds the same table."""
    try:
        import pandas as pd
        import tables  # noqa: F401  (pandas needs it to write HDF5)
    except ImportError:
        return None
    columns = pd.MultiIndex.from_product([[scorer], list(analysis.names), ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    values = np.concatenate([analysis.points, analysis.scores[..., None]], axis=-1).reshape(len(analysis.frames), -1)
    table = pd.DataFrame(values, index=analysis.frames, columns=columns)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        table.to_hdf(tmp, key="df_with_missing", format="table", mode="w")
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DunetError(f"{path}: cannot write the analysis table ({err.strerror or err})") from None
    return path


def plot_trajectories(analysis: Analysis, out_dir: Path, name: str, size: tuple[int, int] | None) -> list[Path]:
    """One PNG per body part: its path over the video, coloured by time; low-score points left out. None without
    matplotlib (the runtime install has none): said in a line, the tables are written all the same."""
    import importlib.util
    import sys

    if importlib.util.find_spec("matplotlib") is None:
        print("note: trajectory plots need matplotlib: pip install 'dunet[train]' (or use --no-plots)", file=sys.stderr)
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    time_s = analysis.frames / analysis.fps
    for k, part in enumerate(analysis.names):
        keep = np.isfinite(analysis.points[:, k]).all(axis=1) & (analysis.scores[:, k] >= 0.1)
        figure, axis = plt.subplots(figsize=(6, 4.5), dpi=100)
        dots = axis.scatter(analysis.points[keep, k, 0], analysis.points[keep, k, 1], c=time_s[keep], s=3,
                            cmap="viridis")
        axis.plot(analysis.points[keep, k, 0], analysis.points[keep, k, 1], lw=0.3, color="grey", alpha=0.5)
        figure.colorbar(dots, ax=axis, label="time (s)")
        if size is not None:
            axis.set_xlim(0, size[0])
            axis.set_ylim(size[1], 0)  # image coordinates: y grows downwards
        else:
            axis.invert_yaxis()
        axis.set_aspect("equal")
        axis.set_title(f"{name}: {part}\n{int(keep.sum())} of {len(keep)} frames (score >= 0.1)", fontsize=10)
        axis.set_xlabel("x (px)")
        axis.set_ylabel("y (px)")
        path = out_dir / f"{name}_trajectory_{_safe(part)}.png"
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def output_names(videos) -> list[str]:
    """The NAME of each video's outputs (NAME.csv, ...): its file name without the extension, unless another
    of `videos` has the same (two sessions' m3v1.mp4 in folders a/ and b/), then its folder's name in front
    (a_m3v1, b_m3v1), and a number after if that still clashes. Compared ignoring case, as macOS and Windows
    file systems do, so no video's outputs overwrite another's."""
    paths = [Path(v) for v in videos]
    stems = [p.stem.casefold() for p in paths]
    names = [p.stem if stems.count(p.stem.casefold()) == 1 else f"{p.parent.resolve().name}_{p.stem}" for p in paths]
    taken: set[str] = set()
    for i, name in enumerate(names):
        number, unique = 1, name
        while unique.casefold() in taken:
            number += 1
            unique = f"{name}_{number}"
        names[i] = unique
        taken.add(unique.casefold())
    return names


def analyse_video(landmarker, video: str | Path, out_dir: str | Path, *, filter: str = "none",
                  labelled: bool = True, plots: bool = True, progress: bool = True, name: str | None = None) -> Analysis:
    """Predict every frame of `video` and write, in OUT_DIR: NAME.csv (per frame: x, y, score per body part),
    NAME_dlc.csv and NAME_dlc.h5 (DeepLabCut's layout), NAME_labelled.mp4 and NAME_trajectory_PART.png.
    NAME: `name`, else the video's file name without its extension (`output_names` gives several videos
    distinct ones). filter: "median" (over MEDIAN_WINDOW frames, applied to the tables and plots), "oneeuro"
    (while predicting, so the labelled video shows it too) or "none"."""
    from dunet.video import FrameStats, process_video

    if filter not in FILTERS:
        raise DunetError(f"--filter {filter}: choose one of {', '.join(FILTERS)}")
    video, out_dir = Path(video), Path(out_dir)
    name = name or video.stem
    began = time.perf_counter()
    summary = process_video(landmarker, video, out_dir, name=name, smooth=filter == "oneeuro", track=False,
                            labelled=labelled, progress=progress)
    frames, points, scores = read_video_csv(out_dir / f"{name}.csv", landmarker.names)
    if filter == "median":
        points = median_filter(points)
    stats = FrameStats()
    _frame_size(video, stats)
    result = Analysis(str(video), tuple(landmarker.names), frames, points, scores, fps=stats.fps or 30.0,
                      outputs=list(summary.outputs))
    result.outputs.append(str(write_dlc_csv(result, out_dir / f"{name}_dlc.csv")))
    h5 = write_dlc_h5(result, out_dir / f"{name}_dlc.h5")
    if h5 is not None:
        result.outputs.append(str(h5))
    if plots:
        size = (stats.width, stats.height) if stats.width else None
        result.outputs += [str(p) for p in plot_trajectories(result, out_dir, name, size)]
    result.seconds = time.perf_counter() - began
    return result


def _frame_size(video: Path, stats) -> None:
    cv2 = import_optional("cv2")  # the `video` extra

    capture = cv2.VideoCapture(str(video))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        stats.fps = fps if math.isfinite(fps) and fps > 0 else 30.0
        stats.width, stats.height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()


# --- outliers ------------------------------------------------------------------------------------------------


def suspicion(points: np.ndarray, scores: np.ndarray, edges: list[tuple[int, int]] | None = None,
              min_score: float = 0.5) -> dict[str, np.ndarray]:
    """Per frame, how likely the model is wrong, by three signs (each 0 = fine, >= 1 = suspect):
    "score": the lowest body-part score below `min_score`; "jump": the largest move of a body part away from
    both neighbouring frames, in units of the animal's usual size / 4; "length": the largest departure of a
    skeleton edge (the config's, else every pair of body parts) from its usual length, in robust standard
    deviations / 4."""
    n, k = scores.shape
    low = np.clip((min_score - scores.min(axis=1)) / min_score, 0, None)
    pairs = edges or [(i, j) for i in range(k) for j in range(i + 1, k)]
    lengths = np.stack([np.linalg.norm(points[:, i] - points[:, j], axis=-1) for i, j in pairs], axis=1) \
        if pairs else np.zeros((n, 0))
    with _quiet():
        size = float(np.nanmedian(lengths.max(axis=1))) if lengths.size else 1.0
    size = size if math.isfinite(size) and size > 0 else 1.0
    # A jump: far from the previous frame and from the next one (a real fast move is near one of them).
    before = np.linalg.norm(points - np.roll(points, 1, axis=0), axis=-1)
    after = np.linalg.norm(points - np.roll(points, -1, axis=0), axis=-1)
    before[0], after[-1] = after[0], before[-1]
    jump = np.nan_to_num(np.minimum(before, after).max(axis=1) / (size / 4), nan=0.0)
    if lengths.size:
        with _quiet():
            median = np.nanmedian(lengths, axis=0)
            spread = 1.4826 * np.nanmedian(np.abs(lengths - median), axis=0) + 0.02 * size
        length = np.nan_to_num((np.abs(lengths - median) / spread).max(axis=1) / 4, nan=0.0)
    else:
        length = np.zeros(n)
    return {"score": low, "jump": jump, "length": length}


def pick_outliers(signs: dict[str, np.ndarray], count: int, gap: int | None = None) -> list[int]:
    """Positions of the `count` most suspect frames (max over the signs), at least `gap` frames apart so
    one bad stretch does not take every pick (default: 10, less in a video too short for `count` picks
    that far apart); only frames with some sign (> 0) are picked."""
    total = np.max(np.stack(list(signs.values())), axis=0)
    gap = gap if gap is not None else max(1, min(10, len(total) // (2 * count)))
    chosen: list[int] = []
    for i in np.argsort(-total, kind="stable"):
        if total[i] <= 0 or len(chosen) == count:
            break
        if all(abs(int(i) - c) >= gap for c in chosen):
            chosen.append(int(i))
    return sorted(chosen)


@dataclass
class Outliers:
    frames: list[int]  # frame indices, sorted
    images: list[Path]  # the PNGs written
    labels: Path  # the machine-labels CSV with the model's points
    reasons: list[str]  # per frame: which sign picked it


def find_outliers(landmarker, video: str | Path, count: int = 20, project: str | Path | None = None,
                  min_score: float = 0.5, progress: bool = True) -> Outliers:
    """Predict every frame of `video`, pick the `count` frames where the model is most likely wrong
    (`suspicion`), write them to PROJECT/labeled-data/VIDEO/imgNNNN.png and the model's points for them to
    PROJECT/labeled-data/VIDEO/machinelabels.csv (DeepLabCut's CollectedData layout, scorer "machine"):
    proposals to correct in the labeller, kept apart from the hand labels until they are checked.
    PROJECT: default the project the video lies in, else the current folder."""
    import tempfile

    from dunet.data.readers import DlcLabels, read_dlc_labels, write_dlc_labels
    from dunet.project import frame_name, labelled_folder, project_of, save_frames, skeleton_of, video_frames

    video = Path(video)
    root = Path(project) if project is not None else (project_of(video) or Path("."))
    with tempfile.TemporaryDirectory() as scratch:
        from dunet.video import process_video

        process_video(landmarker, video, scratch, track=False, labelled=False, progress=progress)
        frames, points, scores = read_video_csv(Path(scratch) / f"{video.stem}.csv", landmarker.names)
    signs = suspicion(points, scores, skeleton_of(root, landmarker.names) or None, min_score)
    picked = pick_outliers(signs, count)
    indices = [int(frames[i]) for i in picked]
    folder = labelled_folder(root, video)
    images = save_frames(video, indices, folder) if indices else []
    total = video_frames(video)
    labels_path = folder / "machinelabels.csv"
    proposals = read_dlc_labels(labels_path).frames if labels_path.is_file() else {}
    for i, index in zip(picked, indices):
        proposals[f"labeled-data/{folder.name}/{frame_name(index, total)}"] = points[i]
    write_dlc_labels(labels_path, DlcLabels("machine", list(landmarker.names), proposals))
    reasons = [max(signs, key=lambda s: signs[s][i]) for i in picked]
    return Outliers(indices, images, labels_path, reasons)
