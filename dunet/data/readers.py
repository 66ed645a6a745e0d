"""Readers: each turns one on-disk format into a `Source` of `Sample`s (see docs/data.md for layouts).

A data source is named `FORMAT:PATH[:IMAGE_DIR]`:
    300w:DIR               folders (searched recursively) of images with same-named .pts files
    lsp:DIR | lsp:FILE.mat joints.mat (3x14xN original or 14x3xN extended) and images/imNNNN.jpg
    lspet:DIR              LSP-extended: joints.mat (14x3xN, flag 0 = not annotated) and images/imNNNNN.jpg
    mpii:FILE.json[:DIR]   the MPII JSON list (joints, joints_vis, center, scale, image)
    coco:FILE.json[:DIR]   COCO keypoints JSON, one sample per annotated instance
    dlc:FILE.csv[:DIR]     DeepLabCut CollectedData CSV
    synthetic[:N[:SEED[:SIZE]]]  the built-in generated faces

Problems with single items (a missing image, a wrong point count, NaN coordinates, ...) are collected
as `BadItem`s: by default the first is raised as a DunetError, with `skip_bad` they are left out and
listed in `Source.skipped`. Problems with the whole source (no such file, unreadable JSON) always raise.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.files import atomic_write_file
from dunet.data.images import IMAGE_EXTENSIONS, image_size
from dunet.data.sample import BadItem, Sample, Source, box_from_keypoints, check_keypoints, require_samples
from dunet.data.spec import SPECS, DatasetSpec, names_problem, spec_from_coco_category, spec_from_names


def _finish(name: str, spec: DatasetSpec, samples: list[Sample], bad: list[BadItem], skip_bad: bool) -> Source:
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more bad items)" if len(bad) > 1 else ""
        raise DunetError(
            f"{bad[0]}{more}; fix it, or pass --skip-bad to leave bad items out "
            f"(`dunet data check {name}` lists them all)"
        )
    return Source(name, spec, samples, list(bad))


def _read_json(path: Path):
    if not path.is_file():
        raise DunetError(f"{path}: annotation file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DunetError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DunetError(f"{path}: cannot read ({err})") from None


def _image_checked(path: Path, keypoints: np.ndarray, visible: np.ndarray, expected: int,
                   sizes: dict[Path, tuple[int, int]] | None = None) -> tuple[tuple[int, int] | None, str | None]:
    """Image size from the header and the problem with the keypoints, if any."""
    if sizes is not None and path in sizes:
        size = sizes[path]
    else:
        try:
            size = image_size(path)
        except DunetError as err:
            return None, str(err).removeprefix(f"{path}: ")
        if sizes is not None:
            sizes[path] = size
    return size, check_keypoints(keypoints, visible, size[0], size[1], expected)


# --- 300-W style: IMAGE + IMAGE.pts -------------------------------------------------------------


def parse_pts(path: Path) -> np.ndarray:
    """Points of a .pts file, as written (1-based in the 300-W convention); the official header
    (`version: 1`, `n_points: N`, `{` ... `}`) is optional. Raises ValueError with the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not a text .pts file") from None
    declared = None
    points = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line in ("{", "}"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            if key.strip() == "n_points":
                try:
                    declared = int(value)
                except ValueError:
                    raise ValueError(f"line {number}: bad n_points {value.strip()!r}") from None
            elif key.strip() != "version":
                raise ValueError(f"line {number}: unexpected header {line!r}")
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"line {number}: expected 'x y', got {line!r}")
        try:
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise ValueError(f"line {number}: not numbers: {line!r}") from None
    if declared is not None and declared != len(points):
        raise ValueError(f"header says n_points: {declared} but the file has {len(points)} points")
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def read_pts_folder(folder: str | os.PathLike, skip_bad: bool = False, name: str = "",
                    spec: DatasetSpec = SPECS["300w"]) -> Source:
    """Every image under `folder` (recursively) with a .pts file of the same name beside it."""
    root = Path(folder)
    name = name or f"300w:{folder}"
    if not root.is_dir():
        raise DunetError(f"{root}: folder not found")
    images: dict[Path, list[Path]] = {}
    annotations: list[Path] = []
    for path in sorted(root.rglob("*")):
        suffix = path.suffix.lower()
        if suffix == ".pts":
            annotations.append(path)
        elif suffix in IMAGE_EXTENSIONS:
            images.setdefault(path.with_suffix(""), []).append(path)
    samples, bad = [], []
    annotated = set()
    k = spec.num_keypoints
    for pts in annotations:
        stem = pts.with_suffix("")
        annotated.add(stem)
        found = images.get(stem, [])
        if not found:
            bad.append(BadItem(str(pts), f"missing image: no {stem.name}.jpg/.png/... beside it"))
            continue
        if len(found) > 1:  # which one the points belong to is anyone's guess
            names = ", ".join(p.name for p in found)
            bad.append(BadItem(str(pts), f"several images share its name ({names}); keep one"))
            continue
        image = found[0]
        try:
            points = parse_pts(pts) - 1.0  # 1-based -> 0-based
        except ValueError as err:
            bad.append(BadItem(str(pts), str(err)))
            continue
        visible = np.ones(len(points), dtype=np.float32)
        size, problem = _image_checked(image, points, visible, k)
        if problem:
            bad.append(BadItem(str(pts if size else image), problem))
            continue
        centre, side = box_from_keypoints(points, visible)
        samples.append(Sample(str(image), points, visible, centre, side, {"annotation": str(pts)}))
    for stem, found in images.items():
        if stem not in annotated:
            bad += [BadItem(str(image), f"missing annotation: no {stem.name}.pts beside it") for image in found]
    return _finish(name, spec, samples, bad, skip_bad)


# --- LSP: joints.mat + images/imNNNN.jpg ---------------------------------------------------------


# The two Leeds Sports Pose layouts of `joints.mat`: the original release (3, 14, N), whose flag row is 1 for an
# occluded joint (every joint has coordinates), and LSP-extended (14, 3, N), whose flag is 1 for an annotated
# joint and 0 for one that is not annotated (its coordinates are placeholders, often outside the image).
LSP_LAYOUTS = {"lsp": (3, 14), "lspet": (14, 3)}


def read_lsp(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, skip_bad: bool = False,
             name: str = "", layout: str | None = None) -> Source:
    """LSP `joints.mat` and `images/imNNNN.jpg` (or imNNNNN.jpg). `layout` "lsp" expects the original
    (3, 14, N) array, "lspet" the extended (14, 3, N) one; None takes either, read by its shape.
    Original: every joint is labelled, flag 1 goes to meta["occluded"]. Extended: flag 0 = not annotated
    (visible 0, masked out of loss and metrics). Coordinates are MATLAB 1-based and become 0-based."""
    import scipy.io

    path = Path(path)
    name = name or f"{layout or 'lsp'}:{path}"
    mat_path = path / "joints.mat" if path.is_dir() else path
    if not mat_path.is_file():
        raise DunetError(f"{mat_path}: LSP joints file not found")
    try:
        mat = scipy.io.loadmat(str(mat_path))
    except Exception as err:  # scipy raises several types for broken files
        raise DunetError(f"{mat_path}: cannot read MATLAB file ({err})") from None
    joints = mat.get("joints")
    if joints is None:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DunetError(f"{mat_path}: no 'joints' array (found: {found})")
    try:
        joints = np.asarray(joints, dtype=np.float64)
        first = int(np.asarray(mat.get("first_index", 1), dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise DunetError(f"{mat_path}: 'joints' and 'first_index' must hold numbers") from None
    accepted = {layout: LSP_LAYOUTS[layout]} if layout else LSP_LAYOUTS
    found = next((kind for kind, shape in accepted.items() if joints.ndim == 3 and joints.shape[:2] == shape), None)
    if found is None:
        shapes = " or ".join(f"({a}, {b}, N) ({kind})" for kind, (a, b) in accepted.items())
        raise DunetError(f"{mat_path}: 'joints' has shape {joints.shape}; expected {shapes}")
    if found == "lsp":
        xy, flags = joints[:2].transpose(2, 1, 0), joints[2].T
        labelled, occluded = np.ones_like(flags, dtype=bool), flags == 1.0
    else:
        xy, flags = joints[:, :2].transpose(2, 0, 1), joints[:, 2].T
        labelled, occluded = flags != 0.0, np.zeros_like(flags, dtype=bool)
    folder = Path(image_dir) if image_dir else mat_path.parent / "images"
    if not image_dir and not folder.is_dir():
        folder = mat_path.parent
    if not folder.is_dir():
        raise DunetError(f"{folder}: LSP image folder not found")
    samples, bad = [], []
    for n in range(xy.shape[0]):
        number = first + n
        candidates = [folder / f"im{number:04d}.jpg", folder / f"im{number:05d}.jpg"]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            bad.append(BadItem(str(candidates[0]), f"missing image for joints entry {n} of {mat_path.name}"))
            continue
        points = xy[n] - 1.0
        visible = labelled[n].astype(np.float32)
        if not visible.any():
            bad.append(BadItem(str(image), f"joints entry {n} of {mat_path.name} has no annotated joint"))
            continue
        size, problem = _image_checked(image, points, visible, 14)
        if problem:
            bad.append(BadItem(str(image), problem))
            continue
        centre, side = box_from_keypoints(points, visible)
        meta = {"index": n, "occluded": occluded[n]}
        samples.append(Sample(str(image), points, visible, centre, side, meta))
    return _finish(name, SPECS["lsp"], samples, bad, skip_bad)


# --- MPII JSON list -------------------------------------------------------------------------------


def _head_size(entry: dict) -> float:
    """PCKh normaliser: 0.6 x the head-box diagonal (official evaluation), if the entry has one."""
    if "head_size" in entry:
        try:
            return float(entry["head_size"])
        except (TypeError, ValueError):
            return math.nan
    box = entry.get("headbox") or entry.get("head_box")
    try:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return math.nan
    if box.size != 4:
        return math.nan
    return 0.6 * float(np.hypot(box[2] - box[0], box[3] - box[1]))


def read_mpii(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, skip_bad: bool = False,
              name: str = "") -> Source:
    """The MPII annotation list used by most pose code: entries with `image`, `joints` (16 x 2),
    `joints_vis`, `center` and `scale` (person height / 200). MATLAB 1-based coordinates become
    0-based; the box follows the usual convention: centre moved down 15 x scale px, side 200 x scale
    (the spec's box_margin adds x1.25). Optional `headbox` [x1, y1, x2, y2] or `head_size` gives PCKh."""
    path = Path(path)
    name = name or f"mpii:{path}"
    data = _read_json(path)
    if not isinstance(data, list):
        raise DunetError(f"{path}: expected a JSON list of MPII entries, got {type(data).__name__}")
    folder = Path(image_dir) if image_dir else path.parent
    if not image_dir and (path.parent / "images").is_dir():
        folder = path.parent / "images"
    samples, bad = [], []
    sizes: dict[Path, tuple[int, int]] = {}
    for n, entry in enumerate(data):
        where = f"{path} entry {n}"
        if not isinstance(entry, dict):
            bad.append(BadItem(where, "not an object"))
            continue
        missing = [key for key in ("image", "joints", "joints_vis", "center", "scale") if key not in entry]
        if missing:
            bad.append(BadItem(where, f"missing {', '.join(repr(m) for m in missing)}"))
            continue
        image = folder / str(entry["image"])
        where = f"{path} entry {n} ({entry['image']})"
        try:
            joints = np.asarray(entry["joints"], dtype=np.float64)
            vis = np.asarray(entry["joints_vis"], dtype=np.float64).reshape(-1)
            centre = np.asarray(entry["center"], dtype=np.float64).reshape(2)
            scale = float(entry["scale"])
        except (TypeError, ValueError):
            bad.append(BadItem(where, "joints, joints_vis, center and scale must be numbers"))
            continue
        if joints.ndim != 2 or joints.shape[1] != 2 or len(joints) != 16 or len(vis) != 16:
            bad.append(BadItem(where, f"expected 16 joints and 16 joints_vis, found {joints.shape} / {len(vis)}"))
            continue
        if not (np.isfinite(centre).all() and math.isfinite(scale) and scale > 0):
            bad.append(BadItem(where, f"bad center {centre.tolist()} or scale {scale}"))
            continue
        points = joints - 1.0
        visible = (vis > 0).astype(np.float32)
        size, problem = _image_checked(image, points, visible, 16, sizes)
        if problem:
            bad.append(BadItem(where if size else str(image), problem))
            continue
        centre = centre - 1.0 + np.array([0.0, 15.0 * scale])
        meta = {"index": n, "head_size": _head_size(entry), "mpii_scale": scale}
        samples.append(Sample(str(image), points, visible, centre, 200.0 * scale, meta))
    return _finish(name, SPECS["mpii"], samples, bad, skip_bad)


# --- COCO keypoints --------------------------------------------------------------------------------


def read_coco(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, skip_bad: bool = False,
              name: str = "") -> Source:
    """COCO keypoints JSON: one sample per non-crowd annotation with keypoints; the spec comes from
    the category (names, 1-based skeleton, optional 0-based `flip_pairs`). Visibility 0 = unlabelled,
    1 = labelled but occluded, 2 = visible. The box is the annotation's bbox (or the keypoints' box)."""
    path = Path(path)
    name = name or f"coco:{path}"
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise DunetError(f"{path}: not a COCO file (needs 'images' and 'annotations' lists)")
    folder = Path(image_dir) if image_dir else path.parent
    samples, bad = [], []
    images, shared = {}, {}  # shared: ids listed for several different files, with their names
    for n, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
            bad.append(BadItem(f"{path} images[{n}]", "needs an 'id' (a number or string) and a 'file_name' string"))
            continue
        earlier = images.setdefault(img["id"], img)
        if earlier["file_name"] != img["file_name"]:  # which file its annotations label is anyone's guess
            shared.setdefault(img["id"], [earlier["file_name"]]).append(img["file_name"])
    annotations = [a for a in data["annotations"] if isinstance(a, dict) and "keypoints" in a]
    annotations = [a for a in annotations if not a.get("iscrowd", 0)]
    if not annotations:
        raise DunetError(f"{path}: the data set is empty (no annotations with keypoints)")
    spec, k = _coco_spec(path, data, annotations)
    sizes: dict[Path, tuple[int, int]] = {}
    for ann in annotations:
        where = f"{path} annotation {ann.get('id', '?')}"
        raw = ann["keypoints"]
        if not isinstance(raw, list) or len(raw) % 3 or len(raw) // 3 != k:
            found = f"{len(raw)} numbers" if isinstance(raw, list) else type(raw).__name__
            bad.append(BadItem(where, f"expected {k} keypoints ({3 * k} numbers: x, y, v triples), found {found}"))
            continue
        image_id = ann.get("image_id")
        info = images.get(image_id) if _is_id(image_id) else None
        if info is None:
            bad.append(BadItem(where, f"image id {image_id!r} is not listed in 'images'"))
            continue
        if image_id in shared:
            bad.append(BadItem(where, f"image id {image_id!r} is listed for several files in 'images' "
                                      f"({', '.join(shared[image_id])}); give each image its own id"))
            continue
        image = folder / str(info["file_name"])
        where = f"{path} annotation {ann.get('id', '?')} ({info['file_name']})"
        try:
            triples = np.asarray(raw, dtype=np.float64).reshape(k, 3)
        except (TypeError, ValueError):
            bad.append(BadItem(where, "keypoints must be numbers"))
            continue
        flags = triples[:, 2]
        odd = np.flatnonzero(~np.isin(flags, COCO_VISIBILITY))
        if odd.size:  # 7 or 1.5 are no COCO flag: a typo or another format's column, not "labelled"
            bad.append(BadItem(where, f"keypoint {odd[0]} has visibility {flags[odd[0]]:g}; COCO's flags are "
                                      "0 (unlabelled), 1 (occluded) and 2 (visible)"))
            continue
        points, visible = triples[:, :2], (flags > 0).astype(np.float32)
        size, problem = _image_checked(image, points, visible, k, sizes)
        if problem:
            bad.append(BadItem(where if size else str(image), problem + ("" if size else f" ({where})")))
            continue
        box = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in box)
            ok = w > 0 and h > 0 and all(math.isfinite(v) for v in (x, y, w, h))
        except (TypeError, ValueError):
            ok = False
        if ok:
            centre, side = np.array([x + w / 2, y + h / 2]), max(w, h)
        elif visible.any():
            centre, side = box_from_keypoints(points, visible)
        else:
            centre, side = np.array(size, dtype=np.float64) / 2, float(max(size))
        meta = {"annotation_id": ann.get("id"), "image_id": ann.get("image_id"),
                "occluded": triples[:, 2] == 1, "area": ann.get("area")}
        samples.append(Sample(str(image), points, visible, centre, side, meta))
    return _finish(name, spec, samples, bad, skip_bad)


COCO_VISIBILITY = (0, 1, 2)  # unlabelled, labelled but occluded, visible


def _is_id(value) -> bool:
    """COCO ids are numbers (some tools write strings); a list or an object cannot name anything."""
    return isinstance(value, (int, float, str))


def _coco_spec(path: Path, data: dict, annotations: list[dict]) -> tuple[DatasetSpec, int]:
    """The landmark spec of the file's one keypoint category, and its keypoint count."""
    listed = data.get("categories") or []
    if not isinstance(listed, list):
        raise DunetError(f"{path}: 'categories' must be a list")
    categories = {c["id"]: c for c in listed if isinstance(c, dict) and _is_id(c.get("id"))}
    used = sorted({repr(a.get("category_id")) for a in annotations})
    if len(used) > 1:
        raise DunetError(f"{path}: annotations of several categories ({', '.join(used)}); "
                         "keep one keypoint category per file")
    category_id = annotations[0].get("category_id")
    if category_id is not None and not _is_id(category_id):
        raise DunetError(f"{path}: category_id {category_id!r} is not a number or string")
    if categories and category_id not in categories:
        # Without its category the keypoint names and flip pairs would be lost without a word.
        raise DunetError(f"{path}: the annotations' category_id {category_id!r} is not among the categories "
                         f"(ids {', '.join(map(repr, categories))})")
    category = categories.get(category_id, {})
    names, skeleton = category.get("keypoints"), category.get("skeleton")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DunetError(f"{path}: category {category_id!r}: 'keypoints' must be a list of names")
    if skeleton is not None and not (isinstance(skeleton, list) and all(isinstance(e, list) for e in skeleton)):
        raise DunetError(f"{path}: category {category_id!r}: 'skeleton' must be a list of [i, j] pairs")
    counts = [len(a["keypoints"]) // 3 for a in annotations if isinstance(a["keypoints"], list)]
    k = max(set(counts), key=counts.count) if counts else 0
    try:
        return spec_from_coco_category(category, k, str(path)), k
    except (TypeError, ValueError) as err:  # e.g. flip_pairs of the wrong shape
        raise DunetError(f"{path}: category {category_id!r} is malformed ({err})") from None


# --- DeepLabCut CollectedData.csv ----------------------------------------------------------------


def _dlc_skeleton(csv_path: Path, names: list[str]) -> list[tuple[int, int]]:
    """Skeleton from the project's config.yaml (searched upwards), if there is one."""
    import yaml

    for folder in list(csv_path.parents)[:4]:
        config = folder / "config.yaml"
        if config.is_file():
            try:
                data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            except (yaml.YAMLError, OSError, UnicodeDecodeError):
                return []
            edges = data.get("skeleton") if isinstance(data, dict) else None
            index = {n: i for i, n in enumerate(names)}
            # Only well-formed edges between known body parts: the skeleton is a drawing aid.
            return [(index[e[0]], index[e[1]]) for e in (edges if isinstance(edges, list) else [])
                    if isinstance(e, list) and len(e) == 2 and all(isinstance(n, str) and n in index for n in e)]
    return []


def _dlc_columns(path: Path, header: dict[str, list[str]]) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """Body-part names and, per animal, the x column of each body part. Single-animal files have one
    animal (""); multi-animal ones (an `individuals` row) one per individual, all with the same body
    parts. Multi-animal `single` columns (unique body parts, not tied to an animal) are left out."""
    parts, coords = header["bodyparts"], header["coords"]
    animals = header.get("individuals")
    for key in ("bodyparts", "individuals"):
        row = header.get(key)
        if row is not None and _cells(row) != _cells(coords):
            # A short row would shift or drop body parts without a word.
            raise DunetError(f"{path}: the {key} header row has {_cells(row)} cells but the coords row has "
                             f"{_cells(coords)}; every x and y column needs its {key} entry")
    x_columns = [i for i, c in enumerate(coords) if c == "x"]
    if not x_columns or any(i + 1 >= len(coords) or coords[i + 1] != "y" or parts[i + 1] != parts[i]
                            or (animals and animals[i + 1] != animals[i]) for i in x_columns):
        raise DunetError(f"{path}: the coords row must list x, y for each body part")
    if not animals:
        return [parts[i] for i in x_columns], [("", x_columns)]
    groups: dict[str, list[int]] = {}
    for i in x_columns:
        if animals[i] != "single":
            groups.setdefault(animals[i], []).append(i)
    if not groups:
        raise DunetError(f"{path}: no individuals besides 'single' (unique body parts only)")
    first = next(iter(groups.values()))
    names = [parts[i] for i in first]
    for animal, columns in groups.items():
        if [parts[i] for i in columns] != names:
            raise DunetError(f"{path}: individual {animal!r} has body parts {[parts[i] for i in columns]}, "
                             f"expected the same as the first individual: {names}")
    return names, list(groups.items())


def _cells(row: list[str]) -> int:
    """Cells of a CSV row up to its last non-empty one (spreadsheets drop or add empty trailing cells)."""
    return max((i + 1 for i, cell in enumerate(row) if cell.strip()), default=0)


def _dlc_points(values: list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray, str | None]:
    points = np.zeros((len(names), 2))
    visible = np.zeros(len(names), dtype=np.float32)
    for j, (x, y) in enumerate(zip(values[0::2], values[1::2])):
        x, y = x.strip(), y.strip()
        if not x and not y:
            continue
        try:
            points[j] = float(x), float(y)
        except ValueError:
            return points, visible, f"{names[j]}: expected numbers or empty cells, got {x!r}, {y!r}"
        visible[j] = 1.0
    return points, visible, None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _refuse_hdf5(path: Path) -> None:
    """DeepLabCut's .h5 is a pandas table in HDF5: reading it takes pandas and PyTables, which dunet does not
    depend on, while DeepLabCut writes the same labels as a CSV beside it."""
    with open(path, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            return
    beside = path.with_suffix(".csv")
    csv_name = f"dlc:{beside}" if beside.is_file() else f"its {path.stem}.csv"
    raise DunetError(f"{path}: an HDF5 file (DeepLabCut's .h5), which dunet does not read; give the CSV that "
                     f"DeepLabCut writes beside it: {csv_name}")


def read_dlc(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, skip_bad: bool = False,
             name: str = "") -> Source:
    """DeepLabCut labels: header rows `scorer`, [`individuals`,] `bodyparts`, `coords` (x, y per body
    part), then one row per frame whose first cell(s) give the image path relative to the project.
    Empty cells are unlabelled points. In a multi-animal file every labelled individual of a frame is
    one sample (its box from its own keypoints); a single-animal frame is cropped whole, as `dunet predict`
    crops a frame without a box, so training, eval and predict see the same crops. Images are looked up under IMAGE_DIR, else the CSV's
    folder or its parents."""
    path = Path(path)
    name = name or f"dlc:{path}"
    rows, header = _dlc_rows(path)
    names, animals = _dlc_columns(path, header)
    problem = names_problem(names)
    if problem:
        raise DunetError(f"{path}: bodyparts row: {problem.replace('keypoint', 'body part')}")
    index_columns = min(columns[0] for _, columns in animals)
    header_rows = 4 if "individuals" in header else 3
    data_rows = [(number, r) for number, r in enumerate(rows[header_rows:], start=header_rows + 1)
                 if any(cell.strip() for cell in r)]
    if not data_rows:
        raise DunetError(f"{path}: the data set is empty (no labelled frames)")

    def relative(row: list[str]) -> str:
        return "/".join(cell for cell in row[:index_columns] if cell)

    if image_dir:
        base = Path(image_dir)
    else:
        first = relative(data_rows[0][1])
        base = next((folder for folder in [path.parent, *list(path.parents)[1:4]] if (folder / first).is_file()),
                    path.parent)
    spec = spec_from_names("dlc", names, _dlc_skeleton(path, names))
    samples, bad = [], []
    width = _cells(header["coords"])
    for number, row in data_rows:
        if (len(row) < width and _cells(row) == len(row)) or _cells(row) > width:
            # A cut-off row (a truncated file), not one whose empty trailing cells a spreadsheet dropped; or
            # one with cells to spare (an unquoted comma in its path), whose values sit under the wrong names.
            bad.append(BadItem(f"{path} row {number}", f"has {_cells(row)} cells, the header has {width}"))
            continue
        row = row + [""] * (width - len(row))
        image = base / relative(row)
        for animal, columns in animals:
            where = f"{path} row {number}" + (f" ({animal})" if animal else "")
            values = [row[c] for i in columns for c in (i, i + 1)]
            points, visible, problem = _dlc_points(values, names)
            if problem:
                bad.append(BadItem(where, problem))
                continue
            if animal and not visible.any():
                continue  # this individual is not in the frame
            size, problem = _image_checked(image, points, visible, len(names))
            if problem:
                bad.append(BadItem(where if size else str(image), problem + ("" if size else f" ({where})")))
                continue
            extra = {"row": number, "individual": animal} if animal else {"row": number}
            # The PCK / NME box normaliser: the labelled points' box, not the crop (NaN if it has no extent).
            extra["object_size"] = box_from_keypoints(points, visible)[1] if visible.sum() >= 2 else math.nan
            if animal:  # one crop per animal, around its points: predict needs boxes (--boxes) for these
                centre, side = box_from_keypoints(points, visible)
            else:  # the whole frame, as `dunet predict` sees it without a box: eval scores what predict does
                centre, side = np.array(size, dtype=np.float64) / 2 - 0.5, float(max(size))
            samples.append(Sample(str(image), points, visible, centre, side, extra))
    if not animals[0][0]:
        spec = dataclasses.replace(spec, box_margin=1.0)  # the crop is the frame itself: no margin around it
    return _finish(name, spec, samples, bad, skip_bad)


def _dlc_rows(path: Path) -> tuple[list[list[str]], dict[str, list[str]]]:
    """The rows of a CollectedData CSV and its header rows by their first cell (scorer, [individuals,] bodyparts,
    coords)."""
    if not path.is_file():
        raise DunetError(f"{path}: DeepLabCut CSV not found")
    _refuse_hdf5(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel starts its UTF-8 with a BOM
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DunetError(f"{path}: cannot read CSV ({err})") from None
    header = {row[0]: row for row in rows[:4] if row}
    if not {"scorer", "bodyparts", "coords"} <= set(header):
        raise DunetError(f"{path}: not a DeepLabCut CollectedData CSV (expected header rows scorer, bodyparts, coords)")
    return rows, header


@dataclasses.dataclass
class DlcLabels:
    """The labels of one single-animal DeepLabCut CollectedData CSV as a table, images not opened: what the
    labeller edits and writes back. `frames` maps an image path relative to the project ("labeled-data/VIDEO/
    img0001.png") to one (x, y) per body part, NaN for an empty cell (unlabelled). `index_columns` is 1
    (the path in one cell, older DeepLabCut) or 3 (labeled-data, VIDEO, image: DeepLabCut 2.2 and later)."""

    scorer: str
    names: list[str]
    frames: dict[str, np.ndarray]
    index_columns: int = 3


def read_dlc_labels(path: str | os.PathLike) -> DlcLabels:
    """A CollectedData CSV as a `DlcLabels` table. Multi-animal files are refused (the labeller edits one
    animal per frame); a bad cell raises, naming its row, so that no label is silently dropped."""
    path = Path(path)
    rows, header = _dlc_rows(path)
    if "individuals" in header:
        raise DunetError(f"{path}: a multi-animal project; dunet edits single-animal labels only")
    names, animals = _dlc_columns(path, header)
    columns = animals[0][1]
    frames: dict[str, np.ndarray] = {}
    for number, row in enumerate(rows[3:], start=4):
        if not any(cell.strip() for cell in row):
            continue
        row = row + [""] * (columns[-1] + 2 - len(row))
        # DeepLabCut on Windows writes labeled-data\VIDEO\img.png in one cell: the same frame as on Linux.
        key = "/".join(cell for cell in row[:columns[0]] if cell).replace("\\", "/")
        points, visible, problem = _dlc_points([row[c] for i in columns for c in (i, i + 1)], names)
        if problem:
            raise DunetError(f"{path} row {number}: {problem}")
        points[visible == 0] = np.nan
        frames[key] = points
    return DlcLabels(header["scorer"][columns[0]], names, frames, columns[0])


def write_dlc_labels(path: str | os.PathLike, labels: DlcLabels) -> None:
    """Write `labels` as DeepLabCut writes CollectedData CSVs (3 header rows, frames sorted, empty cells for
    unlabelled points), atomically: a reader, or a process killed mid-write, sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # a video's folder in labeled-data/ may be new
    blank = [""] * (labels.index_columns - 1)
    rows = [["scorer", *blank, *[labels.scorer] * (2 * len(labels.names))],
            ["bodyparts", *blank, *[n for n in labels.names for _ in "xy"]],
            ["coords", *blank, *["x", "y"] * len(labels.names)]]
    for key in sorted(labels.frames):
        parts = key.split("/")
        if labels.index_columns > 1:  # labeled-data, VIDEO, image; a deeper path keeps its folders in the last
            parts = parts[:labels.index_columns - 1] + ["/".join(parts[labels.index_columns - 1:])]
        index = ["/".join(parts)] if labels.index_columns == 1 else parts + [""] * (labels.index_columns - len(parts))
        # repr keeps every digit: an untouched label is written back exactly as it was read.
        rows.append(index + ["" if math.isnan(v) else repr(float(v)) for v in labels.frames[key].reshape(-1)])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    atomic_write_file(path, text.getvalue(), what="the label table")


# --- FORMAT:PATH ---------------------------------------------------------------------------------


MAX_SYNTHETIC_COUNT, MAX_SYNTHETIC_SIZE = 100_000, 4096


def _synthetic(rest: str, skip_bad: bool, name: str) -> Source:
    from dunet.data.synthetic import DEFAULT_COUNT, DEFAULT_SIZE, synthetic_source

    parts = [p for p in rest.split(":")] if rest else []
    if len(parts) > 3:
        raise DunetError(f"{name}: expected synthetic[:N[:SEED[:SIZE]]]")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise DunetError(f"{name}: N, SEED and SIZE must be integers") from None
    count, seed, size = (values + [DEFAULT_COUNT, 0, DEFAULT_SIZE][len(values):])[:3]
    # The upper bounds keep a typo from allocating gigabytes of sample records or of pixels per face.
    if not (1 <= count <= MAX_SYNTHETIC_COUNT and 16 <= size <= MAX_SYNTHETIC_SIZE and seed >= 0):
        raise DunetError(f"{name}: need 1 <= N <= {MAX_SYNTHETIC_COUNT:,}, SEED >= 0 and "
                         f"16 <= SIZE <= {MAX_SYNTHETIC_SIZE}")
    return synthetic_source(count, seed, size, name)


READERS: dict[str, Callable[..., Source]] = {
    "300w": lambda rest, skip_bad, name: read_pts_folder(rest, skip_bad, name),
    "pts": lambda rest, skip_bad, name: read_pts_folder(rest, skip_bad, name),
    "lsp": lambda rest, skip_bad, name: read_lsp(*_path_and_dir(rest, name), skip_bad=skip_bad, name=name),
    "lspet": lambda rest, skip_bad, name: read_lsp(*_path_and_dir(rest, name), skip_bad=skip_bad, name=name,
                                                   layout="lspet"),
    "mpii": lambda rest, skip_bad, name: read_mpii(*_path_and_dir(rest, name), skip_bad=skip_bad, name=name),
    "coco": lambda rest, skip_bad, name: read_coco(*_path_and_dir(rest, name), skip_bad=skip_bad, name=name),
    "dlc": lambda rest, skip_bad, name: read_dlc(*_path_and_dir(rest, name), skip_bad=skip_bad, name=name),
    "synthetic": _synthetic,
}


def _path_and_dir(rest: str, name: str) -> tuple[str, str | None]:
    parts = rest.split(":")
    if len(parts) > 2 or not parts[0]:
        raise DunetError(f"{name}: expected FORMAT:PATH[:IMAGE_DIR]")
    return parts[0], (parts[1] or None) if len(parts) == 2 else None


def open_source(text: str, skip_bad: bool = False, allow_empty: bool = False) -> Source:
    """Open a data source named `FORMAT:PATH[:IMAGE_DIR]` (see the module docstring). An empty result
    (nothing found, or everything skipped as bad) is an error unless `allow_empty`."""
    fmt, sep, rest = text.partition(":")
    fmt = fmt.strip().lower()
    if fmt not in READERS:
        raise DunetError(f"unknown data format {fmt!r} in {text!r}; use one of: {', '.join(READERS)} as FORMAT:PATH")
    if not sep and fmt != "synthetic":
        raise DunetError(f"{text!r}: expected FORMAT:PATH, e.g. {fmt}:path/to/data")
    source = READERS[fmt](rest, skip_bad, text)
    return source if allow_empty else require_samples(source)


def combine_sources(sources: list[Source]) -> Source:
    """One Source over several with the same landmark layout (training on LSP + LSP-extended, say). Each
    sample keeps its own image loader; `meta["source"]` is the position of the source it came from."""
    if len(sources) == 1:
        return sources[0]
    first = sources[0]
    for other in sources[1:]:
        if other.spec.keypoints != first.spec.keypoints or other.spec.flip_pairs != first.spec.flip_pairs:
            raise DunetError(f"{first.name} and {other.name} have different landmark layouts "
                             f"({first.spec.name}: {first.spec.num_keypoints} keypoints, {other.spec.name}: "
                             f"{other.spec.num_keypoints}); train on sources with the same keypoints in the same order")
    samples, loaders = [], []
    for position, source in enumerate(sources):
        for sample in source.samples:
            sample.meta["source"] = position
        samples += source.samples
        loaders.append(source.loader)

    def load(sample: Sample) -> np.ndarray:
        loader = loaders[sample.meta["source"]]
        if loader is not None:
            return loader(sample)
        from dunet.data.images import load_image

        return load_image(sample.image_path)

    return Source(" + ".join(s.name for s in sources), first.spec, samples,
                  [bad for s in sources for bad in s.skipped], loader=load)
