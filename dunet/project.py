"""DeepLabCut project folders: their labels, and frames picked from a video for labelling.

A project is a folder with DeepLabCut's layout: `config.yaml` (bodyparts, skeleton, scorer),
`labeled-data/VIDEO/imgNNNN.png` and `labeled-data/VIDEO/CollectedData_SCORER.csv` (+ `.h5`), `videos/`.
dunet reads and writes that layout as it is, so a lab can move between the two tools.

    from dunet.project import extract_frames, project_data
    extract_frames("videos/m3v1.mp4", count=20, out="my_project")   # my_project/labeled-data/m3v1/img0042.png ...
    project_data("my_project")                                       # ["dlc:my_project/labeled-data/m3v1/CollectedData_me.csv", ...]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dunet import DunetError

FEATURE_SIZE = (32, 24)  # frames are compared as grey thumbnails: the animal's pose and place, not its texture
MAX_SCANNED = 2000  # k-means looks at this many frames at most, spread evenly over the video


def is_project(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.yaml").is_file()


def project_config(root: str | Path) -> dict:
    """The project's config.yaml as a dict ({} when it is unreadable: it is a help, not a requirement)."""
    import yaml

    try:
        data = yaml.safe_load((Path(root) / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def skeleton_of(root: str | Path | None, names) -> list[tuple[int, int]]:
    """The config's skeleton as index pairs of `names` (edges naming unknown body parts are left out)."""
    if root is None or not is_project(root):
        return []
    edges = project_config(root).get("skeleton")
    index = {n: i for i, n in enumerate(names)}
    return [(index[a], index[b]) for a, b in (e for e in (edges or []) if isinstance(e, list) and len(e) == 2)
            if a in index and b in index]


def label_files(root: str | Path) -> list[Path]:
    """Every labeled-data/*/CollectedData_*.csv of a project, sorted."""
    return sorted(Path(root).glob("labeled-data/*/CollectedData_*.csv"))


def project_data(root: str | Path) -> list[str]:
    """The project's label files as FORMAT:PATH data sources (one per labelled video), each checked against
    the config's body parts: a file naming a point the config does not is one line naming the file."""
    from dunet.data.readers import read_dlc_rows

    root = Path(root)
    if not is_project(root):
        raise DunetError(f"{root}: not a DeepLabCut project (no config.yaml)")
    files = label_files(root)
    if not files:
        raise DunetError(f"{root}: no labels yet (labeled-data/*/CollectedData_*.csv); pick frames with "
                         "`dunet frames VIDEO --out PROJECT` and label them")
    parts = project_config(root).get("bodyparts")
    for file in files:
        names = read_dlc_rows(file)[1]
        if isinstance(parts, list) and names != parts:
            unknown = [n for n in names if n not in parts]
            what = (f"names point(s) {', '.join(unknown)} that config.yaml does not" if unknown
                    else f"has body parts {names}, config.yaml {parts} (the same, in the same order, are needed)")
            raise DunetError(f"{file}: {what}")
    return [f"dlc:{file}:{root}" for file in files]


def frame_name(index: int, frames: int) -> str:
    """DeepLabCut's name for frame `index`: img + the index zero-padded to the digits of the frame count."""
    width = max(1, len(str(max(frames - 1, 0))))
    return f"img{index:0{width}d}.png"


def video_frames(path: str | Path) -> int:
    """The frame count a video's header gives (0 if unknown); a DunetError naming the file if it cannot be opened."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DunetError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DunetError(f"{path}: OpenCV cannot open this video (unknown or corrupt format)")
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def pick_frames(video: str | Path, count: int, method: str = "kmeans", seed: int = 0) -> list[int]:
    """`count` frame indices of `video`, sorted. "uniform": evenly spaced; "kmeans": the frame nearest the
    centre of each of `count` clusters of grey thumbnails, so rare poses and places get a frame as common
    ones do (as DeepLabCut's kmeans extraction)."""
    import cv2

    from dunet.video import FrameStats, read_frames

    if method not in ("kmeans", "uniform"):
        raise DunetError(f"--method {method}: choose kmeans or uniform")
    if count < 1:
        raise DunetError(f"--count {count}: must be at least 1")
    total = video_frames(video)
    if total and count > total:  # the header's count: said at once rather than after decoding the whole video
        raise DunetError(f"{video}: --count {count} but the video has {total} frames")
    step = max(1, total // MAX_SCANNED) if method == "kmeans" else max(1, total // max(count, 1))
    stats = FrameStats()
    indices, features = [], []
    for index, _, rgb in read_frames(video, every=step, stats=stats):
        indices.append(index)
        if method == "kmeans":
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            features.append(cv2.resize(grey, FEATURE_SIZE, interpolation=cv2.INTER_AREA).ravel())
    frames = stats.frames or len(indices)
    if not indices:
        raise DunetError(f"{video}: no frame could be decoded")
    if count > frames:
        raise DunetError(f"{video}: --count {count} but the video has {frames} frames")
    if method == "uniform" or count >= len(indices):
        if count >= len(indices) and method == "kmeans":  # fewer scanned frames than wanted: take every frame
            indices = list(range(frames))
        return [indices[i * len(indices) // count] for i in range(count)]
    data = np.asarray(features, np.float32) / 255.0
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    _, labels, centres = cv2.kmeans(data, count, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    labels = labels.ravel()
    chosen = []
    for k in range(count):
        members = np.flatnonzero(labels == k)
        if members.size:
            nearest = members[np.argmin(((data[members] - centres[k]) ** 2).sum(axis=1))]
            chosen.append(indices[nearest])
    return sorted(chosen)


def video_name(video: str | Path) -> str:
    return Path(video).stem


def labelled_folder(root: str | Path, video: str | Path) -> Path:
    return Path(root) / "labeled-data" / video_name(video)


def project_of(video: str | Path) -> Path | None:
    """The project a video lies in (PROJECT/videos/VIDEO with PROJECT/config.yaml), if any."""
    folder = Path(video).resolve().parent
    for candidate in (folder.parent, folder):
        if is_project(candidate):
            return candidate
    return None


def save_frames(video: str | Path, indices, folder: str | Path) -> list[Path]:
    """Write the frames `indices` of `video` as DeepLabCut's PNGs in `folder` (each atomically; a frame
    already there is kept, as DeepLabCut keeps it). Returns the paths, in index order."""
    import cv2

    from dunet.checkpoint import atomic_write_file
    from dunet.video import read_frames

    folder = Path(folder)
    wanted = set(int(i) for i in indices)
    total = video_frames(video)
    written = []
    for index, _, rgb in read_frames(video):
        if index in wanted:
            path = folder / frame_name(index, total)
            if not path.exists():
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise DunetError(f"{path}: OpenCV cannot encode this frame as PNG")
                atomic_write_file(path, png.tobytes(), what="the frame")
            written.append(path)
            wanted.discard(index)
            if not wanted:
                break
    if wanted:
        raise DunetError(f"{video}: frame(s) {sorted(wanted)[:5]} could not be decoded")
    return written


def extract_frames(video: str | Path, count: int = 20, method: str = "kmeans", out: str | Path | None = None,
                   seed: int = 0) -> list[Path]:
    """Pick `count` frames of `video` (`pick_frames`) and write them to OUT/labeled-data/VIDEO/imgNNNN.png,
    where labelling looks for them. OUT: a project folder or any folder; default: the project the video lies
    in, else the current folder."""
    root = Path(out) if out is not None else (project_of(video) or Path("."))
    return save_frames(video, pick_frames(video, count, method, seed), labelled_folder(root, video))
