"""Projects: one folder in DeepLabCut's layout holds a user's own keypoints, so a lab can move between the tools.

    project/
        config.yaml                          bodyparts, skeleton, scorer, video_sets (as DeepLabCut writes them)
        labeled-data/VIDEO/img0001.png       the frames to label, one folder per video
        labeled-data/VIDEO/CollectedData_SCORER.csv   the labels (dunet.data.readers reads and writes them)

`new_project` creates one; `open_project` reads one, whether dunet or DeepLabCut made it.
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


def _video_size(path: Path) -> tuple[int, int]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise DunetError(f"{path}: cannot decode the video")
    return frame.shape[1], frame.shape[0]
