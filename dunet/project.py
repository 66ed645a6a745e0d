"""Projects: one folder in DeepLabCut's layout holds a user's own keypoints, so a lab can move between the tools.

    project/
        config.yaml                          bodyparts, skeleton, scorer, video_sets (as DeepLabCut writes them)
        labeled-data/VIDEO/img0001.png       the frames to label, one folder per video
        labeled-data/VIDEO/CollectedData_SCORER.csv   the labels (dunet.data.readers reads and writes them)

`new_project` creates one; `open_project` reads one, whether dunet or DeepLabCut made it.

The frames side: `extract_frames("videos/m3v1.mp4", count=20, out="my_project")` writes
my_project/labeled-data/m3v1/img0042.png ...; `project_data("my_project")` lists its label files as data sources
("dlc:my_project/labeled-data/m3v1/CollectedData_me.csv", ...).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.data.images import IMAGE_EXTENSIONS
from dunet.data.readers import DlcLabels, read_dlc_labels, write_dlc_labels
from dunet.runtime.backends import import_optional

LABELLED_DATA = "labeled-data"


@dataclasses.dataclass
class Project:
    root: Path
    config: dict
    points: list[str]
    skeleton: list[tuple[str, str]]
    scorer: str

    @property
    def videos(self) -> list[str]:
        """The folders of labeled-data/ (one per video); DeepLabCut's `VIDEO_labeled` check plots are not."""
        folder = self.root / LABELLED_DATA
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.endswith("_labeled")) \
            if folder.is_dir() else []

    def label_file(self, video: str) -> Path:
        """The video's CollectedData CSV: the one there is (whatever its scorer), else CollectedData_SCORER.csv."""
        folder = self.root / LABELLED_DATA / video
        found = sorted(folder.glob("CollectedData_*.csv"))
        return found[0] if found else folder / f"CollectedData_{self.scorer}.csv"

    def frames(self) -> list[str]:
        """Every image to label, as a path relative to the project ("labeled-data/VIDEO/img0001.png")."""
        return [f"{LABELLED_DATA}/{video}/{p.name}" for video in self.videos
                for p in sorted((self.root / LABELLED_DATA / video).iterdir())
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]

    def labels(self, video: str) -> DlcLabels:
        """The video's labels with the config's body parts in the config's order (a body part added to the
        config since is empty); an empty table when nothing is labelled yet."""
        path = self.label_file(video)
        if not path.is_file():
            return DlcLabels(self.scorer, list(self.points), {})
        table = read_dlc_labels(path)
        unknown = [n for n in table.names if n not in self.points]
        if unknown:
            raise DunetError(f"{path}: labels name points the config does not: {', '.join(unknown)} "
                             f"(config.yaml bodyparts: {', '.join(self.points)}); add them to config.yaml")
        order = [table.names.index(n) if n in table.names else -1 for n in self.points]
        frames = {key: np.array([xy[i] if i >= 0 else (math.nan, math.nan) for i in order])
                  for key, xy in table.frames.items()}
        return DlcLabels(table.scorer, list(self.points), frames, table.index_columns)

    def save_labels(self, video: str, labels: DlcLabels) -> Path:
        path = self.label_file(video)
        write_dlc_labels(path, labels)
        return path


def open_project(path: str | os.PathLike) -> Project:
    """A project folder made by `new_project` or by DeepLabCut, read from its config.yaml as it is. Every
    label file is read once, so that a label naming a body part the config lacks stops here."""
    import yaml

    root = Path(path)
    if not root.is_dir():
        raise DunetError(f"{root}: project folder not found (create one with `dunet project new`)")
    config_path = root / "config.yaml"
    if not config_path.is_file():
        raise DunetError(f"{root}: not a project folder (no config.yaml); create one with `dunet project new`")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise DunetError(f"{config_path}: cannot read ({str(err).splitlines()[0]})") from None
    points = config.get("bodyparts") if isinstance(config, dict) else None
    if not isinstance(points, list) or not points or not all(isinstance(p, str) for p in points):
        if isinstance(points, str) and points == "MULTI!":
            raise DunetError(f"{config_path}: a multi-animal project; dunet edits single-animal labels only")
        raise DunetError(f"{config_path}: `bodyparts` must be a list of names")
    edges = config.get("skeleton") or []
    skeleton = [(a, b) for a, b in (e for e in edges if isinstance(e, list) and len(e) == 2)
                if a in points and b in points]
    project = Project(root, config, list(points), skeleton, str(config.get("scorer") or "dunet"))
    for video in project.videos:
        project.labels(video)
    return project


def new_project(path: str | os.PathLike, points: list[str], skeleton: list[tuple[str, str]] = (),
                videos: list[str | os.PathLike] = (), scorer: str = "dunet") -> Project:
    """A new project folder at `path` with DeepLabCut's config.yaml and one labeled-data/ folder (and an empty
    CollectedData CSV) per video. Videos stay where they are: config.yaml lists their full paths, as
    DeepLabCut does when it does not copy them."""
    import yaml

    root = Path(path)
    if root.exists():
        raise DunetError(f"{root}: already exists; `dunet label {root}` works on a project folder as it is")
    points = [p.strip() for p in points if p.strip()]
    if not points or len(set(points)) != len(points):
        raise DunetError(f"points {', '.join(points) or '(none)'}: give distinct names, e.g. --points snout,tail")
    for a, b in skeleton:
        if a not in points or b not in points:
            raise DunetError(f"skeleton edge {a}-{b}: both ends must be among the points ({', '.join(points)})")
    if any(c in scorer for c in "/\\,") or not scorer:
        raise DunetError(f"scorer {scorer!r}: a name without / \\ or ,")
    sets = {}
    for video in videos:
        video = Path(video).resolve()
        if not video.is_file():
            raise DunetError(f"{video}: video not found")
        if any(Path(other).stem == video.stem for other in sets):
            raise DunetError(f"{video}: another video is also named {video.stem}; their frames would share "
                             f"labeled-data/{video.stem}/ (rename one)")
        width, height = _video_size(video)
        sets[str(video)] = {"crop": f"0, {width}, 0, {height}"}
    # The keys DeepLabCut's own create_new_project writes and its tools read; the rest take their defaults.
    config = {
        "Task": root.name, "scorer": scorer, "date": datetime.date.today().strftime("%b%d"),
        "multianimalproject": False, "identity": None, "project_path": str(root.resolve()),
        "video_sets": sets, "bodyparts": points, "start": 0, "stop": 1, "numframes2pick": 20,
        "skeleton": [[a, b] for a, b in skeleton], "skeleton_color": "black", "pcutoff": 0.6, "dotsize": 12,
        "alphavalue": 0.7, "colormap": "rainbow", "TrainingFraction": [0.95], "iteration": 0,
        "default_net_type": "resnet_50", "snapshotindex": -1, "batch_size": 8, "cropping": False,
    }
    for folder in ("videos", LABELLED_DATA, "training-datasets", "dlc-models"):
        (root / folder).mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    project = open_project(root)
    for video in sets:
        (root / LABELLED_DATA / Path(video).stem).mkdir()
        project.save_labels(Path(video).stem, DlcLabels(scorer, points, {}))
    return project


def coco_project(path: str | os.PathLike, coco: str, scorer: str = "dunet") -> tuple[Project, str]:
    """A new project at `path` holding the labels of a COCO keypoints file, and a line saying what it took.
    `coco`: FILE.json[:IMAGE_DIR], as `--data coco:...` takes it. The category's keypoints and skeleton become
    config.yaml's bodyparts and skeleton; labeled-data/NAME/ (NAME: the file's name) gets one frame per
    annotated instance and CollectedData_SCORER.csv its points. An image with one instance is copied as it is;
    one with several is cut into a crop around each, since DeepLabCut's single-animal layout holds one animal
    per frame. Points COCO marks occluded (v=1) keep their place; unlabelled ones (v=0) are empty cells."""
    import shutil

    from dunet.data.readers import open_source

    coco = coco.removeprefix("coco:")  # as --data names it, or without the format
    source = open_source(f"coco:{coco}")  # a bad file is one line naming it, before anything is written
    spec = source.spec
    names = list(spec.keypoints)
    project = new_project(path, names, [(names[a], names[b]) for a, b in spec.skeleton], [], scorer)
    folder = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(coco.split(":")[0]).stem)
    try:
        by_image: dict[str, list] = {}
        for sample in source.samples:
            by_image.setdefault(sample.image_path, []).append(sample)
        frames, taken = {}, set()
        out = project.root / LABELLED_DATA / folder
        out.mkdir()
        for image, samples in by_image.items():
            for n, sample in enumerate(samples):
                stem = Path(image).stem + (f"_{n + 1}" if len(samples) > 1 else "")
                name = stem + (Path(image).suffix.lower() if len(samples) == 1 else ".png")
                while name.casefold() in taken:  # images of the same name from different folders
                    stem += "_"
                    name = stem + Path(name).suffix
                taken.add(name.casefold())
                if len(samples) == 1:
                    shutil.copyfile(image, out / name)
                    offset = np.zeros(2)
                else:
                    offset = _save_crop(image, sample, spec.box_margin, out / name)
                points = np.where(sample.visible[:, None] > 0, sample.keypoints - offset, np.nan)
                frames[f"{LABELLED_DATA}/{folder}/{name}"] = points
        project.save_labels(folder, DlcLabels(scorer, names, frames))
    except BaseException:  # half a project would look like a whole one: leave nothing
        shutil.rmtree(project.root, ignore_errors=True)
        raise
    cut = sum(len(s) for s in by_image.values() if len(s) > 1)
    empty = sum(not s.visible.any() for s in source.samples)
    line = (f"{len(source.samples)} annotated instance(s) of {len(by_image)} image(s) from {coco} -> {out}"
            + (f"; {cut} cut out of images that hold several" if cut else "")
            + (f"; {empty} with no point labelled (frames to label)" if empty else ""))
    return open_project(project.root), line


def _save_crop(image: str, sample, margin: float, path: Path) -> np.ndarray:
    """Write the square around `sample`'s box (its side x `margin`, widened to every labelled point, clipped to
    the image) as a PNG; return the crop's top-left corner, to take off the points."""
    from PIL import Image

    from dunet.data.images import load_image

    pixels = load_image(image)
    height, width = pixels.shape[:2]
    half = sample.scale * margin / 2
    low, high = sample.center - half, sample.center + half
    labelled = sample.keypoints[sample.visible > 0]
    if len(labelled):
        low, high = np.minimum(low, labelled.min(0) - 1), np.maximum(high, labelled.max(0) + 1)
    x0, y0 = (max(0, int(np.floor(v))) for v in low)
    x1, y1 = min(width, int(np.ceil(high[0]))), min(height, int(np.ceil(high[1])))
    Image.fromarray(pixels[y0:y1, x0:x1]).save(path)
    return np.array([x0, y0], dtype=np.float64)


def _video_size(path: Path) -> tuple[int, int]:
    cv2 = import_optional("cv2")  # the `video` extra

    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise DunetError(f"{path}: cannot decode the video")
    return frame.shape[1], frame.shape[0]


# --- frames to label, picked from videos ------------------------------------------------------------

FEATURE_SIZE = (32, 24)  # frames are compared as grey thumbnails: the animal's pose and place, not its texture
MAX_SCANNED = 2000  # k-means looks at this many frames at most, spread evenly over the video


def is_project(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.yaml").is_file()


def skeleton_of(root: str | Path | None, names) -> list[tuple[int, int]]:
    """The project's skeleton as index pairs of `names` (edges naming other body parts are left out); none
    when `root` is no readable project: a skeleton helps, it is not required."""
    if root is None or not is_project(root):
        return []
    try:
        edges = open_project(root).skeleton
    except DunetError:
        return []
    index = {n: i for i, n in enumerate(names)}
    return [(index[a], index[b]) for a, b in edges if a in index and b in index]


def project_data(root: str | Path) -> list[str]:
    """The project's label files as FORMAT:PATH data sources (one per labelled video). `open_project` refuses
    a file naming a point the config does not; here a file must also list the config's body parts in its
    order, as the sources of one training must."""
    project = open_project(root)
    files = [project.label_file(video) for video in project.videos]
    files = [file for file in files if file.is_file()]
    if not files:
        raise DunetError(f"{project.root}: no labels yet (labeled-data/*/CollectedData_*.csv); pick frames with "
                         "`dunet frames VIDEO --out PROJECT` and label them")
    for file in files:
        names = read_dlc_labels(file).names
        if names != project.points:
            raise DunetError(f"{file}: has body parts {names}, config.yaml {project.points} (the same, in the same "
                             "order, are needed)")
    return [f"dlc:{file}:{project.root}" for file in files]


def frame_name(index: int, frames: int) -> str:
    """DeepLabCut's name for frame `index`: img + the index zero-padded to the digits of the frame count."""
    width = max(1, len(str(max(frames - 1, 0))))
    return f"img{index:0{width}d}.png"


def video_frames(path: str | Path) -> int:
    """The frame count a video's header gives (0 if unknown); a DunetError naming the file if it cannot be opened."""
    cv2 = import_optional("cv2")  # the `video` extra

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
    cv2 = import_optional("cv2")  # the `video` extra

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
    cv2 = import_optional("cv2")  # the `video` extra

    from dunet.files import atomic_write_file
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
