"""Fuzz suite: seeded mutations of small valid data sets in every supported format (300-W .pts, LSP and
LSPET joints.mat, MPII and COCO JSON, DeepLabCut CSV, and their images). Whatever the mutation (truncation,
wrong types, wrong shapes, NaN / inf, missing and extra fields, wrong encodings), opening the data and
loading every sample ends in a DunetError that names a file of the data set, or in skipped `BadItem`s that
do; never in another exception. Each case is a pure function of its seed: a failure names the seed."""

import copy
import os
import json
import math

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dunet import DunetError
from dunet.data import LandmarkDataset, open_source
from dunet.data.sample import BadItem

from .helpers import face_points, write_coco, write_image, write_pts

CASES = int(os.environ.get("FUZZ_CASES", 50))  # per format; all of them take a few seconds
WEIRD = [None, True, -1, 0, 2**70, 1e308, -1e30, math.nan, math.inf, -math.inf, "", "x", "1.5", [], [1],
         [[1, 2]], {}, {"id": [1]}]


# --- valid data sets, small (64 px images) ---------------------------------------------------------


def _points(k, rng, size=64):
    return rng.uniform(8, size - 8, size=(k, 2)).round(2)


def make_300w(root, rng):
    for name, ext in (("a", "jpg"), ("b", "png")):
        write_image(root / f"{name}.{ext}", 64, 64)
        write_pts(root / f"{name}.pts", face_points(64, 64))
    return f"300w:{root}"


def _lsp(root, rng, layout):
    n, digits = 2, 4 if layout == "lsp" else 5
    xy = rng.uniform(8, 56, size=(2, 14, n))
    if layout == "lsp":
        joints = np.concatenate([xy, np.zeros((1, 14, n))])
    else:
        joints = np.concatenate([xy.transpose(1, 0, 2), np.ones((14, 1, n))], axis=1)
    scipy.io.savemat(str(root / "joints.mat"), {"joints": joints})
    for i in range(n):
        write_image(root / "images" / f"im{i + 1:0{digits}d}.jpg", 64, 64)
    return f"{layout}:{root}"


def make_lsp(root, rng):
    return _lsp(root, rng, "lsp")


def make_lspet(root, rng):
    return _lsp(root, rng, "lspet")


def make_mpii(root, rng):
    entries = []
    for i in range(2):
        write_image(root / f"p{i}.jpg", 64, 64)
        entries.append({"image": f"p{i}.jpg", "joints": _points(16, rng).tolist(), "joints_vis": [1] * 16,
                        "center": [32, 32], "scale": 0.2, "headbox": [20, 5, 40, 25]})
    (root / "mpii.json").write_text(json.dumps(entries))
    return f"mpii:{root / 'mpii.json'}"


def make_coco(root, rng):
    for name in ("c0.jpg", "c1.png"):
        write_image(root / name, 120, 120)
    return f"coco:{write_coco(root, ['c0.jpg', 'c1.png'], instances_per_image=2)}"


def make_dlc(root, rng):
    parts = ["snout", "leftear", "rightear", "tail"]
    header = [["scorer"] + ["me"] * 8, ["bodyparts"] + [p for p in parts for _ in "xy"], ["coords"] + ["x", "y"] * 4]
    rows = []
    for i in range(2):
        write_image(root / "labeled-data" / "v" / f"img{i}.png", 64, 64)
        rows.append([f"labeled-data/v/img{i}.png"] + [str(v) for v in _points(4, rng).reshape(-1)])
    path = root / "labeled-data" / "v" / "CollectedData_me.csv"
    path.write_text("\n".join(",".join(r) for r in header + rows) + "\n")
    return f"dlc:{path}"


FORMATS = {"300w": make_300w, "lsp": make_lsp, "lspet": make_lspet, "mpii": make_mpii, "coco": make_coco,
           "dlc": make_dlc}


# --- mutations -----------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng) -> bytes:
    kind = rng.integers(5)
    if kind == 0 or not data:  # truncated
        return data[: int(rng.integers(len(data) + 1))]
    if kind == 1:  # flipped bytes
        out = bytearray(data)
        for i in rng.integers(len(out), size=int(rng.integers(1, 8))):
            out[i] = int(rng.integers(256))
        return bytes(out)
    if kind == 2:  # a slice lost from the middle
        a = int(rng.integers(len(data)))
        return data[:a] + data[a + int(rng.integers(1, 64)):]
    if kind == 3:  # another encoding
        try:
            return data.decode("utf-8").encode(["utf-16", "utf-32", "cp1252"][int(rng.integers(3))], "replace")
        except UnicodeDecodeError:
            return b"\xff\xfe" + data
    return b""


def mutate_text(text: str, rng) -> str:
    lines = text.splitlines()
    kind = rng.integers(6)
    if kind == 0 and lines:  # a line lost or doubled
        i = int(rng.integers(len(lines)))
        lines[i:i + 1] = [] if rng.random() < 0.5 else [lines[i]] * 2
    elif kind == 1:  # a value replaced: NaN, inf, far away, text, empty
        tokens = text.replace(",", " , ").split(" ")
        numeric = [i for i, t in enumerate(tokens) if t.strip().replace(".", "").replace("-", "").isdigit()]
        if numeric:
            tokens[numeric[int(rng.integers(len(numeric)))]] = str(rng.choice(["nan", "inf", "-1e30", "abc", "", "1e400"]))
        return " ".join(tokens).replace(" , ", ",")
    elif kind == 2 and lines:  # a cell or field dropped or added
        i = int(rng.integers(len(lines)))
        cells = lines[i].split(",") if "," in lines[i] else lines[i].split()
        if rng.random() < 0.6 and cells:  # the last cell as often as any other: a row cut short
            cells.pop(-1 if rng.random() < 0.5 else int(rng.integers(len(cells))))
        else:
            cells.append(str(rng.choice(["7", "x", ""])))
        lines[i] = ("," if "," in lines[i] else " ").join(cells)
    elif kind == 3:  # extra text
        lines.insert(int(rng.integers(len(lines) + 1)), str(rng.choice(["{", "}", "n_points: 3", "junk: 1", "é,ü"])))
    elif kind == 4 and len(lines) > 1:  # lines out of order
        i, j = rng.integers(len(lines), size=2)
        lines[i], lines[j] = lines[j], lines[i]
    else:
        return text[: int(rng.integers(len(text) + 1))]
    return "\n".join(lines) + "\n"


def _nodes(value, path=()):
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _nodes(child, path + (key,))


def mutate_json(data, rng):
    data = copy.deepcopy(data)
    paths = [p for p in _nodes(data) if p]
    fields = [p for p in paths if isinstance(p[-1], str)]  # mostly named fields: ids, categories, boxes
    pool = fields if fields and rng.random() < 0.8 else paths
    path = pool[int(rng.integers(len(pool)))]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    kind = rng.integers(4)
    if kind == 0:  # wrong type or value
        parent[key] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
    elif kind == 1:  # missing
        del parent[key]
    elif kind == 2:  # wrong shape: wrapped in a list, or an extra field
        if isinstance(parent, dict) and rng.random() < 0.5:
            parent["extra_" + str(key)] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
        else:
            parent[key] = [parent[key]]
    else:  # another node's value in its place
        other = data
        for k in paths[int(rng.integers(len(paths)))]:
            other = other[k]
        parent[key] = copy.deepcopy(other)
    return data


def mutate_mat(path, rng):
    mat = scipy.io.loadmat(str(path))
    joints = mat["joints"].astype(np.float64)
    kind = rng.integers(6)
    if kind == 0:  # NaN / inf / far values
        joints.reshape(-1)[int(rng.integers(joints.size))] = rng.choice([np.nan, np.inf, -1e30, 1e30])
    elif kind == 1:  # wrong shape
        joints = joints.reshape(-1)[: int(rng.integers(joints.size + 1))]
    elif kind == 2:  # wrong type
        joints = np.array([["a", "b"]])
    elif kind == 3:  # missing, under another name
        mat = {"points": joints}
    elif kind == 4:  # an odd first index
        odd = [np.array([[0]]), np.array([[-5]]), np.array([[np.nan]]), np.array([])]
        mat["first_index"] = odd[int(rng.integers(len(odd)))]
    else:
        joints = joints.transpose()
    if "points" not in mat:
        mat["joints"] = joints
    scipy.io.savemat(str(path), {k: v for k, v in mat.items() if not k.startswith("__")})


def mutate(root, rng):
    """Mutate one file of the data set under `root`, chosen at random."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = files[int(rng.integers(len(files)))]
    suffix = target.suffix.lower()
    try:  # a structured mutation where the file (not yet broken by an earlier one) allows it
        if suffix == ".json" and rng.random() < 0.7:
            target.write_text(json.dumps(mutate_json(json.loads(target.read_text()), rng)))
            return target
        if suffix == ".mat" and rng.random() < 0.7:
            mutate_mat(target, rng)
            return target
        if suffix in (".pts", ".csv") and rng.random() < 0.7:
            target.write_text(mutate_text(target.read_text(), rng))
            return target
        if suffix in (".jpg", ".png") and rng.random() < 0.3:  # a valid image of another mode or size
            kind = rng.integers(3)
            image = Image.new(["L", "RGBA", "I;16"][kind], (int(rng.integers(1, 300)), int(rng.integers(1, 300))))
            image.save(target, format="PNG")
            return target
    except (ValueError, KeyError, IndexError, OSError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        pass
    target.write_bytes(mutate_bytes(target.read_bytes(), rng))
    return target


# --- the contract ----------------------------------------------------------------------------------


def _names_a_file(message: str, root) -> bool:
    return str(root) in message or any(p.name in message for p in root.rglob("*"))


def check_contract(text: str, root) -> None:
    """Open `text` strictly and with skip_bad, then load every sample: only DunetErrors and BadItems that
    name a file under `root` may come out."""
    for skip_bad in (False, True):
        try:
            source = open_source(text, skip_bad=skip_bad)
        except DunetError as err:
            assert _names_a_file(str(err), root) and "\n" not in str(err), str(err)
            continue
        for bad in source.skipped:
            assert _names_a_file(str(bad), root), str(bad)
        dataset = LandmarkDataset(source, input_size=64, augment=True, bad_sample="skip")
        for i in range(len(dataset)):
            item = dataset[i]
            if isinstance(item, BadItem):
                assert _names_a_file(str(item), root), str(item)
            else:
                assert item["image"].shape == (3, 64, 64)
                assert np.isfinite(item["heatmaps"].numpy()).all()


@pytest.mark.parametrize("seed", range(CASES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzed_data_ends_in_a_clear_error_or_skipped_items(tmp_path, fmt, seed):
    rng = np.random.default_rng([seed, list(FORMATS).index(fmt)])
    root = tmp_path / "data"
    root.mkdir()
    text = FORMATS[fmt](root, rng)
    for _ in range(int(rng.integers(1, 3))):
        mutate(root, rng)
    check_contract(text, root)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unmutated_data_sets_open(tmp_path, fmt):
    """The builders make valid data: the mutations, not the builders, are what the suite tests."""
    text = FORMATS[fmt](tmp_path, np.random.default_rng(0))
    assert len(open_source(text)) >= 2
