"""Bad inputs and faults fed to the CLI as a new user would: each case runs `dunet ...` in a fresh process
with a timeout and a memory cap, and its outcome is one of

    clean      refused with exit status != 0 and no traceback (the goal for every bad input)
    ok         succeeded where success is right (a control, or a fault that must be survived); for a race
               whose timing decides (`expect="any"`), success, a clean refusal or a clean interruption
    traceback  a Python traceback on stderr
    hang       still running at the timeout
    crash      killed by a signal (out of memory, a segfault)
    silent     exit 0 where a failure was expected, or a wrong result (checked per case)
    lost       refused, but earlier work was lost (an output file destroyed, a temporary file left)
    refused    refused where success was expected

    python bench/bad_inputs.py [--only CATEGORY ...] [--timeout SECONDS] [--keep DIR]

Prints a table per category and the cases that went wrong; writes bench/results/bad_inputs.json.
Categories: control, data, flags, boxes, outputs, models, resume, card, info, races. Odd data that is right to
accept (ACCEPTED) expects success; a full disk is simulated by tests/full_disk.py. A race runs something beside
the command while it runs (a second command, a file edited or replaced, a signal). The unit tests of the
same guarantees are tests/data/test_fuzz.py, tests/commands/test_faults.py and tests/engine/test_faults.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from _timing import machine  # bench/ is on sys.path when run as a script
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bad_inputs.json"
OUTCOMES = ("clean", "ok", "traceback", "hang", "crash", "silent", "lost", "refused")
GOOD = {"clean", "ok"}
MEMORY_CAP = 8 * 2**30  # address space per case: a huge allocation fails in the case, not on the machine
TINY = {  # trains an epoch in seconds
    "model": {"arch": "dunet", "units": 1, "order": 1, "landmarks": 68, "input_size": 32, "channels": 16,
              "bottleneck": 16, "growth": 8, "levels": 2},
    "data": {"train": "synthetic:16:0", "val": "synthetic:4:1", "workers": 0},
    "optim": {"batch_size": 8, "epochs": 1, "lr": 1e-3, "milestones": [1], "gammas": [0.5]},
    "threads": 1,
}


@dataclass
class Case:
    category: str
    name: str
    args: list[str]  # after `dunet`
    expect: str = "error"  # "error": a clean refusal; "ok": success
    check: Callable[[str], str | None] | None = None  # given stdout, what went wrong (a wrong result, lost work)
    full_disk: tuple[Path, int] | None = None  # (folder, bytes of room left): writes there fail with ENOSPC
    # Run beside the command, given its process, until it ends: what went wrong, if anything (a race).
    during: Callable[[subprocess.Popen], str | None] | None = None
    wrong: str = ""  # the outcome when `check` or `during` finds a problem; default: lost (error), silent (ok)


# --- data sets, small and valid, that the cases then break ----------------------------------------------


def face_image(path: Path, size: int = 64, index: int = 0) -> Path:
    from dunet.data.synthetic import render_face

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_face(0, index, size)).save(path)
    return path


def face_points(size: int = 64, index: int = 0) -> np.ndarray:
    from dunet.data.synthetic import face_geometry

    return face_geometry(0, index, size).keypoints.astype(np.float64)


def pts_text(points) -> str:
    return "version: 1\nn_points: {}\n{{\n{}\n}}\n".format(
        len(points), "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points))


def with_first(points: np.ndarray, value: float) -> np.ndarray:
    points = points.copy()
    points[0, 0] = value
    return points


def make_300w(folder: Path, count: int = 3) -> str:
    for i in range(count):
        face_image(folder / f"face{i}.jpg", index=i)
        (folder / f"face{i}.pts").write_text(pts_text(face_points(index=i)))
    return f"300w:{folder}"


def coco_json(folder: Path) -> dict:
    from dunet.data.spec import SPECS

    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(2):
        face_image(folder / f"c{i}.jpg", 96, i)
        images.append({"id": i + 1, "file_name": f"c{i}.jpg", "width": 96, "height": 96})
        triples = np.concatenate([rng.uniform(20, 76, (17, 2)), np.full((17, 1), 2.0)], axis=1)
        annotations.append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                            "keypoints": triples.reshape(-1).round(2).tolist(), "bbox": [15, 15, 66, 66]})
    category = {"id": 1, "name": "person", "keypoints": list(SPECS["coco"].keypoints),
                "skeleton": [[16, 14], [14, 12]]}
    return {"images": images, "annotations": annotations, "categories": [category]}


def mpii_json(folder: Path) -> list:
    rng = np.random.default_rng(1)
    entries = []
    for i in range(2):
        face_image(folder / f"p{i}.jpg", 64, i)
        entries.append({"image": f"p{i}.jpg", "joints": rng.uniform(8, 56, (16, 2)).round(2).tolist(),
                        "joints_vis": [1] * 16, "center": [32, 32], "scale": 0.2, "headbox": [20, 5, 40, 25]})
    return entries


DLC_PARTS = ["snout", "leftear", "rightear", "tail"]


def dlc_rows(folder: Path) -> list[list[str]]:
    rng = np.random.default_rng(2)
    rows = [["scorer"] + ["me"] * 8, ["bodyparts"] + [p for p in DLC_PARTS for _ in "xy"],
            ["coords"] + ["x", "y"] * 4]
    for i in range(2):
        face_image(folder / "labeled-data" / "v" / f"img{i}.png", 64, i)
        rows.append([f"labeled-data/v/img{i}.png"] + [f"{v:.2f}" for v in rng.uniform(8, 56, 8)])
    return rows


def write_dlc(folder: Path, rows: list[list[str]]) -> str:
    path = folder / "labeled-data" / "v" / "CollectedData_me.csv"
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return f"dlc:{path}"


def make_lsp(folder: Path, layout: str = "lsp", joints=None, **fields) -> str:
    import scipy.io

    rng = np.random.default_rng(3)
    digits = 4 if layout == "lsp" else 5
    xy = rng.uniform(8, 56, (2, 14, 2))
    if joints is None:
        joints = (np.concatenate([xy, np.zeros((1, 14, 2))]) if layout == "lsp"
                  else np.concatenate([xy.transpose(1, 0, 2), np.ones((14, 1, 2))], axis=1))
    for i in range(2):
        face_image(folder / "images" / f"im{i + 1:0{digits}d}.jpg", 64, i)
    scipy.io.savemat(str(folder / "joints.mat"), {"joints": joints, **fields})
    return f"{layout}:{folder}"


def png_header(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A PNG of `width` x `height` RGB pixels whose pixel data is `pixels` (no IDAT chunk at all for None)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    idat = b"" if pixels is None else chunk(b"IDAT", pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + idat
            + chunk(b"IEND", b""))


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


# --- the cases -------------------------------------------------------------------------------------------

# Odd data that is right to accept (a documented fallback), and why: these cases expect success.
ACCEPTED = {
    "300w png named jpeg": "images are decoded by their content, not their name",
    "coco bbox negative": "an unusable bbox falls back to the keypoints' box",
    "coco bbox strings": "an unusable bbox falls back to the keypoints' box",
    "coco categories empty": "no category and 17 keypoints: COCO-17, its names and flip pairs",
    "coco categories missing": "no category and 17 keypoints: COCO-17, its names and flip pairs",
    "coco category without names": "17 keypoints without names: COCO-17, its names and flip pairs",
    "coco image listed twice": "the same image entry twice names one file",
    "dlc csv with a byte-order mark": "Excel writes UTF-8 with a BOM",
    "mpii headbox short": "no usable head box: no PCKh normaliser for that sample (NaN, skipped in PCKh)",
}


def data_cases(ws: Path) -> list[Case]:
    cases = []

    def check(name, spec, verify=None):
        cases.append(Case("data", name, ["data", "check", spec], "ok" if name in ACCEPTED else "error", verify))

    def folder(name) -> Path:
        path = ws / "data" / name.replace(" ", "_").replace("/", "_")
        path.mkdir(parents=True)
        return path

    # 300-W folders: images and .pts files.
    for name, mutate in [
        ("300w zero-byte image", lambda d: (d / "face0.jpg").write_bytes(b"")),
        ("300w truncated jpeg", lambda d: (d / "face0.jpg").write_bytes((d / "face0.jpg").read_bytes()[:300])),
        ("300w text as jpeg", lambda d: (d / "face0.jpg").write_text("hello")),
        ("300w png named jpeg", lambda d: Image.open(d / "face0.jpg").save(d / "face0.jpg", format="PNG")),
        ("300w dangling link", lambda d: ((d / "face0.jpg").unlink(), (d / "face0.jpg").symlink_to(d / "gone.jpg"))),
        ("300w decompression bomb", lambda d: Image.new("1", (40000, 40000)).save(d / "face0.jpg", format="PNG")),
        ("300w float tiff", lambda d: ((d / "face0.jpg").unlink(), Image.new("F", (64, 64)).save(d / "face0.tif"))),
        ("300w pts nan", lambda d: (d / "face0.pts").write_text(pts_text(with_first(face_points(), np.nan)))),
        ("300w pts 5 points", lambda d: (d / "face0.pts").write_text(pts_text(face_points()[:5]))),
        ("300w pts text", lambda d: (d / "face0.pts").write_text("not points\n")),
        ("300w pts empty", lambda d: (d / "face0.pts").write_text("")),
        ("300w pts utf-16", lambda d: (d / "face0.pts").write_bytes(pts_text(face_points()).encode("utf-16"))),
        ("300w pts inf", lambda d: (d / "face0.pts").write_text(pts_text(with_first(face_points(), np.inf)))),
        ("300w pts 1e400", lambda d: (d / "face0.pts").write_text(
            pts_text(with_first(face_points(), 7.0)).replace("\n8.000 ", "\n1e400 ", 1))),
        ("300w jpg+png+pts", lambda d: face_image(d / "face0.png", index=5)),
        ("300w pts without image", lambda d: (d / "face0.jpg").unlink()),
        ("300w png header, no pixel data", lambda d: ((d / "face0.jpg").unlink(),
                                                     (d / "face0.png").write_bytes(png_header(20000, 20000)))),
        ("300w png header, empty pixel data", lambda d: ((d / "face0.jpg").unlink(), (d / "face0.png").write_bytes(
            png_header(20000, 20000, b"")))),
    ]:
        d = folder(name)
        spec = make_300w(d)
        mutate(d)
        check(name, spec)
    check("300w empty folder", f"300w:{folder('300w empty')}")
    check("300w missing folder", f"300w:{ws / 'nowhere'}")
    check("unknown format", f"faces:{ws}")
    check("no format", str(ws))

    # COCO keypoints JSON.
    for name, mutate in [
        ("coco not json", lambda j: "{not json"),
        ("coco a list", lambda j: [j]),
        ("coco no annotations", lambda j: {k: v for k, v in j.items() if k != "annotations"}),
        ("coco image_id list", lambda j: j["annotations"][0].update(image_id=[1])),
        ("coco category_id list", lambda j: j["annotations"][0].update(category_id=[1])),
        ("coco images id list", lambda j: j["images"][0].update(id=[1])),
        ("coco unknown category_id", lambda j: [a.update(category_id=7) for a in j["annotations"]]),
        ("coco keypoints nan", lambda j: j["annotations"][0]["keypoints"].__setitem__(0, float("nan"))),
        ("coco keypoints short", lambda j: j["annotations"][0].update(keypoints=[1, 2, 2])),
        ("coco keypoints strings", lambda j: j["annotations"][0].update(keypoints=["a"] * 51)),
        ("coco bbox negative", lambda j: j["annotations"][0].update(bbox=[10, 10, -5, -5])),
        ("coco bbox strings", lambda j: j["annotations"][0].update(bbox="box")),
        ("coco file_name missing", lambda j: j["images"][0].pop("file_name")),
        ("coco file_name a number", lambda j: j["images"][0].update(file_name=7)),
        ("coco image file missing", lambda j: j["images"][0].update(file_name="nothere.jpg")),
        ("coco categories empty", lambda j: j.update(categories=[])),
        ("coco categories missing", lambda j: j.__delitem__("categories")),
        ("coco category without names", lambda j: j["categories"][0].__delitem__("keypoints")),
        ("coco image id twice", lambda j: j["images"][1].update(id=1)),
        ("coco image listed twice", lambda j: j["images"].append(dict(j["images"][0]))),
        ("coco keypoint names twice", lambda j: j["categories"][0]["keypoints"].__setitem__(2, "left_eye")),
        ("coco keypoint name empty", lambda j: j["categories"][0]["keypoints"].__setitem__(2, "")),
        ("coco flip_pairs out of range", lambda j: j["categories"][0].update(flip_pairs=[[0, 99]])),
        ("coco flip_pairs against the names", lambda j: j["categories"][0].update(flip_pairs=[[2, 3]])),
        ("coco visibility 7", lambda j: j["annotations"][0]["keypoints"].__setitem__(2, 7)),
        ("coco visibility 1.5", lambda j: j["annotations"][0]["keypoints"].__setitem__(2, 1.5)),
        ("coco keypoint names not strings", lambda j: j["categories"][0].update(keypoints=[1] * 17)),
        ("coco skeleton out of range", lambda j: j["categories"][0].update(skeleton=[[1, 99]])),
    ]:
        d = folder(name)
        data = coco_json(d)
        changed = mutate(data)
        check(name, f"coco:{write_json(d / 'keypoints.json', data if changed is None else changed)}",
              in_stdout("coco (17 keypoints, flip: 8 pairs)") if name in ACCEPTED else None)

    # MPII JSON.
    for name, mutate in [
        ("mpii not json", lambda e: "[{"),
        ("mpii an object", lambda e: {"image": "p0.jpg"}),
        ("mpii joints short", lambda e: e[0].update(joints=e[0]["joints"][:5])),
        ("mpii joints strings", lambda e: e[0].update(joints=[["a", "b"]] * 16)),
        ("mpii joints nan", lambda e: e[0]["joints"][0].__setitem__(0, float("nan"))),
        ("mpii scale zero", lambda e: e[0].update(scale=0)),
        ("mpii scale negative", lambda e: e[0].update(scale=-1)),
        ("mpii center a string", lambda e: e[0].update(center="middle")),
        ("mpii headbox short", lambda e: e[0].update(headbox=[1, 2])),
        ("mpii image missing", lambda e: e[0].update(image="gone.jpg")),
        ("mpii image path traversal", lambda e: e[0].update(image="../../../../etc/passwd")),
    ]:
        d = folder(name)
        entries = mpii_json(d)
        changed = mutate(entries)
        check(name, f"mpii:{write_json(d / 'mpii.json', entries if changed is None else changed)}")

    # DeepLabCut CSV.
    for name, mutate in [
        ("dlc bodyparts row short", lambda r: r[1].pop()),
        ("dlc coords row short", lambda r: r[2].pop()),
        ("dlc data row short by a part", lambda r: r[3].__delitem__(slice(-2, None))),
        ("dlc data row long", lambda r: r[3].extend(["1", "2"])),
        ("dlc coordinate text", lambda r: r[3].__setitem__(1, "abc")),
        ("dlc coordinate inf", lambda r: r[3].__setitem__(1, "inf")),
        ("dlc no data rows", lambda r: r.__delitem__(slice(3, None))),
        ("dlc only a header", lambda r: r.__delitem__(slice(1, None))),
        ("dlc image missing", lambda r: r[3].__setitem__(0, "labeled-data/v/gone.png")),
        ("dlc individuals row short", lambda r: r.insert(1, ["individuals"] + ["a"] * 5)),
        ("dlc body part twice", lambda r: r[1].__setitem__(slice(5, 7), ["leftear", "leftear"])),
        ("dlc body part empty", lambda r: r[1].__setitem__(slice(3, 5), ["", ""])),
        ("dlc csv with a byte-order mark", lambda r: r[0].__setitem__(0, "\ufeffscorer")),
    ]:
        d = folder(name)
        rows = dlc_rows(d)
        mutate(rows)
        check(name, write_dlc(d, rows))
    d = folder("dlc empty file")
    dlc_rows(d)
    check("dlc empty file", write_dlc(d, []))
    d = folder("dlc h5 file")
    csv_spec = write_dlc(d, dlc_rows(d))
    h5 = Path(csv_spec.removeprefix("dlc:")).with_suffix(".h5")
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))  # the HDF5 signature DeepLabCut's .h5 starts with
    check("dlc h5 file", f"dlc:{h5}")

    # LSP / LSP-extended joints.mat.
    for name, layout, joints, fields in [
        ("lsp joints strings", "lsp", np.array([["a", "b"]]), {}),
        ("lsp joints wrong shape", "lsp", np.zeros((5, 5)), {}),
        ("lsp joints nan", "lsp", np.full((3, 14, 2), np.nan), {}),
        ("lsp first_index string", "lsp", None, {"first_index": "one"}),
        ("lsp first_index nan", "lsp", None, {"first_index": np.array([[np.nan]])}),
        ("lspet joints strings", "lspet", np.array([["a", "b"]]), {}),
        ("lspet joints 1-d", "lspet", np.arange(10.0), {}),
    ]:
        check(name, make_lsp(folder(name), layout, joints, **fields))
    d = folder("lsp not a mat file")
    make_lsp(d)
    (d / "joints.mat").write_text("MATLAB 5.0 MAT-file? no")
    check("lsp not a mat file", f"lsp:{d}")
    d = folder("lsp mat without joints")
    make_lsp(d)
    import scipy.io

    scipy.io.savemat(str(d / "joints.mat"), {"points": np.zeros((3, 14, 2))})
    check("lsp mat without joints", f"lsp:{d}")

    # Synthetic data specs.
    for spec in ("synthetic:abc", "synthetic:-1", "synthetic:0", "synthetic:4:0:0", "synthetic:4:0:-5",
                 "synthetic:4:0:100000", "synthetic:100000000000", "synthetic:4:x"):
        check(spec, spec)
    return cases


def flag_cases(ws: Path, recipe: Path, run: Path) -> list[Case]:
    cases = []
    good_300w = make_300w(ws / "data" / "good_300w", 4)
    out = ws / "train_out"
    for setting in [
        "optim.batch_size=0", "optim.batch_size=-1", "optim.batch_size=abc", "optim.lr=nan", "optim.lr=-1",
        "optim.lr=inf", "optim.weight_decay=nan", "optim.weight_decay=-1", "data.val_fraction=nan",
        "data.val_fraction=2", "data.val_fraction=-0.1", "seed=-1", "data.workers=-2", "threads=-1",
        "eval_every=0", "eval_every=-1", "data.scale_range=[0, 1.25]", "data.scale_range=[1.25, 0.75]",
        "data.scale_range=[1]", "data.sigma=nan", "data.sigma=-1", "data.rotation=nan", "decode_blur=inf",
        "decode_blur=-1", "model.in_channels=1", "model.in_channels=0", "model.units=0", "model.landmarks=5",
        "model.input_size=30", "model.input_size=0", "max_val_samples=-1", "optim.epochs=abc", "optim.epochs=-1",
        "optim.milestones=[1,", "optim.gammas=[nan]", "optim.ema=2", "optim.optimizer=sgd", "precision=fp64",
        "device=tpu", "nokey=1", "optim", "supervision=[guess]", "data.train=synthetic:1000000000:0",
        "data.train_weights=[-1]", "data.normaliser=interocular:nose,chin", "init=nowhere.safetensors",
    ]:
        cases.append(Case("flags", f"train --set {setting}", ["train", str(recipe), "--out",
                                                             str(out / f"set{len(cases)}"), "--set", setting]))
    for name, text in [("recipe malformed yaml", "model: [\n"), ("recipe a list", "- 1\n- 2\n"),
                       ("recipe unknown key", yaml.safe_dump({**TINY, "modle": {}})),
                       ("recipe empty", ""), ("recipe a number", "7\n")]:
        path = write_json(ws / "recipes" / f"{name.replace(' ', '_')}.yaml", text)
        cases.append(Case("flags", f"train {name}", ["train", str(path), "--out", str(out / f"recipe{len(cases)}")]))
    cases.append(Case("flags", "train recipe missing", ["train", str(ws / "nope.yaml")]))
    binary = ws / "recipes" / "model.safetensors"
    binary.write_bytes((run / "last" / "model.safetensors").read_bytes())
    cases.append(Case("flags", "train a model file as the recipe", ["train", str(binary), "--out", str(out / "bin")]))
    cases.append(Case("flags", "train --set threads=1000", ["train", str(recipe), "--out", str(out / "threads"),
                                                           "--set", "threads=1000"], "ok",
                      check=in_stdout("threads 1000 is more than the")))
    cases.append(Case("flags", "train --data and --minutes -1", ["train", "--data", good_300w, "--minutes", "-1",
                                                                "--out", str(out / "z")]))
    cases.append(Case("flags", "train --minutes nan", ["train", "--data", good_300w, "--minutes", "nan",
                                                      "--out", str(out / "z")]))
    for flags in (["--batch-size", "0"], ["--batch-size", "-1"], ["--limit", "-1"], ["--decode-blur", "inf"],
                  ["--decode-blur", "-1"], ["--decode-blur", "nan"], ["--precision", "fp8"], ["--device", "tpu"],
                  ["--backend", "tensorrt"]):
        cases.append(Case("flags", f"eval {' '.join(flags)}", ["eval", str(run), "--data", good_300w, *flags]))
    image = str(face_image(ws / "inputs" / "face.png", 96))
    for flags in (["--batch-size", "-1"], ["--batch-size", "0"], ["--every", "0"], ["--start", "-1"],
                  ["--start", "nan"], ["--end", "-5"], ["--device", "cuda:7"], ["--precision", "half"]):
        cases.append(Case("flags", f"predict {' '.join(flags)}", ["predict", str(run), image, "--out",
                                                                  str(ws / "pred_flags"), *flags]))
    cases.append(Case("flags", "predict --threads 1000", ["predict", str(run), image, "--out", str(ws / "pred_flags"),
                                                          "--threads", "1000"], "ok"))
    for flags in (["--decode-blur", "inf"], ["--decode-blur", "-1"], ["--format", "zip"], ["--int8", "dynamic",
                                                                                           "--format", "safetensors"]):
        args = ["export", str(run), "--out", str(ws / "exported" / "m.safetensors")]
        cases.append(Case("flags", f"export {' '.join(flags)}", args + (flags if "--format" in flags
                                                                        else flags + ["--format", "safetensors"])))
    return cases


def box_cases(ws: Path, run: Path) -> list[Case]:
    image = str(face_image(ws / "inputs" / "face.png", 96))
    cases = []
    for box in ("nan,0,10,10", "0,0,inf,10", "1e308,1e308,1e308,1e308", "0,0,1e12,1e12", "0,0,-5,10", "1,2,3",
                "a,b,c,d", "500,500,10,10", "0,0,0,0", "-1e9,-1e9,10,10", ""):
        cases.append(Case("boxes", f"--box {box!r}", ["predict", str(run), image, f"--box={box}", "--out",
                                                     str(ws / "pred_box")]))
    for name, text, suffix in [
        ("boxes not json", "{", ".json"),
        ("boxes a list", "[[1, 2, 3, 4]]", ".json"),
        ("boxes entry a number", '{"face.png": 7}', ".json"),
        ("boxes entry strings", '{"face.png": ["a", 1, 2, 3]}', ".json"),
        ("boxes entry empty", '{"face.png": []}', ".json"),
        ("boxes entry nested nan", '{"face.png": [[NaN, 1, 2, 3]]}', ".json"),
        ("boxes entry an object", '{"face.png": {"x": 1}}', ".json"),
        ("boxes csv short row", "face.png,1,2,3\n", ".csv"),
        ("boxes csv nan", "face.png,nan,2,30,30\n", ".csv"),
        ("boxes csv binary", "\x00\xff\xfe", ".csv"),
        ("boxes csv no entry", "other.png,1,2,30,30\n", ".csv"),
    ]:
        path = write_json(ws / "boxes" / f"{name.replace(' ', '_')}{suffix}", text)
        cases.append(Case("boxes", name, ["predict", str(run), image, "--boxes", str(path), "--out",
                                          str(ws / "pred_box")]))
    cases.append(Case("boxes", "--boxes missing file", ["predict", str(run), image, "--boxes", str(ws / "none.json")]))
    return cases


def output_cases(ws: Path, run: Path, onnx_model: Path) -> list[Case]:
    image = str(face_image(ws / "inputs" / "face.png", 96))
    a_file = write_json(ws / "outputs" / "a_file.txt", "keep me")
    cases = [
        Case("outputs", "predict --out an existing file", ["predict", str(run), image, "--out", str(a_file)],
             check=unchanged({a_file: a_file.read_bytes()})),
        Case("outputs", "predict --out below a file", ["predict", str(run), image, "--out", str(a_file / "sub")]),
        Case("outputs", "train --out an existing file", ["train", str(ws / "recipes" / "tiny.yaml"), "--out",
                                                         str(a_file)], check=unchanged({a_file: a_file.read_bytes()})),
        Case("outputs", "export --out an existing folder", ["export", str(run), "--format", "safetensors", "--out",
                                                            str(ws / "outputs")]),
        Case("outputs", "export --out below a file", ["export", str(run), "--format", "safetensors", "--out",
                                                      str(a_file / "m.safetensors")]),
        Case("outputs", "export onnx name without .onnx", ["export", str(run), "--format", "onnx", "--out",
                                                           str(ws / "outputs" / "m.bin")]),
    ]
    # A full disk: the earlier outputs must survive whole, and no temporary file may stay.
    for room in (0, 500, 20_000):
        folder = ws / "outputs" / f"predict_full_{room}"
        folder.mkdir(parents=True)
        earlier = {folder / name: b"earlier" for name in ("predictions.json", "predictions.csv", "face_landmarks.png")}
        for path, data in earlier.items():
            path.write_bytes(data)
        cases.append(Case("outputs", f"predict on a full disk ({room} bytes free)",
                          ["predict", str(run), image, "--out", str(folder)], check=whole_or_earlier(folder, earlier),
                          full_disk=(folder, room)))
    for fmt, name, extra in (("safetensors", "m.safetensors", []), ("onnx", "m.onnx", ["--exporter", "torchscript"])):
        good = onnx_model.read_bytes() if fmt == "onnx" else (run / "last" / "model.safetensors").read_bytes()
        # ONNX is written twice (the graph, then again with its metadata): 1.5x its size fails the second write.
        for room in (0, len(good) // 2) + ((len(good) * 3 // 2,) if fmt == "onnx" else ()):
            folder = ws / "outputs" / f"export_full_{fmt}_{room}"
            folder.mkdir(parents=True)
            (folder / name).write_bytes(good)
            cases.append(Case("outputs", f"export {fmt} onto a good file, full disk ({room} bytes free)",
                              ["export", str(run), "--format", fmt, "--out", str(folder / name), *extra],
                              check=unchanged({folder / name: good}, folder), full_disk=(folder, room)))
    for fmt_room in (0, 100_000):  # OpenVINO writes the IR itself: tests/full_disk.py cuts its files
        folder = ws / "outputs" / f"export_full_openvino_{fmt_room}"
        folder.mkdir(parents=True)
        for suffix in (".xml", ".bin"):
            (folder / f"m{suffix}").write_bytes(b"an earlier export")
        files = {folder / f"m{suffix}": b"an earlier export" for suffix in (".xml", ".bin")}
        cases.append(Case("outputs", f"export openvino onto earlier files, full disk ({fmt_room} bytes free)",
                          ["export", str(run), "--format", "openvino", "--exporter", "torchscript", "--out",
                           str(folder / "m.xml")], check=unchanged(files, folder), full_disk=(folder, fmt_room)))

    # demo over an earlier report: the report must stay whole until a new one is complete.
    bad_val = ws / "data" / "demo_val_zero_byte"
    make_300w(bad_val)
    (bad_val / "face0.jpg").write_bytes(b"")
    for name, settings in [("a bad --set", ["optim.epochs=abc"]), ("a missing data.val", ["data.val=300w:nope"]),
                           ("a missing data.train", ["data.train=300w:nope"]),
                           ("model.landmarks=14", ["model.landmarks=14"]),
                           ("a 0-byte image in data.val", [f"data.val=300w:{bad_val}"])]:
        demo, report = earlier_demo(ws / "outputs" / f"demo_{len(cases)}")
        cases.append(Case("outputs", f"demo with {name} over an earlier report",
                          ["demo", "--out", str(demo), *sets(DEMO_TINY + settings)], check=report))
    demo, report = earlier_demo(ws / "outputs" / "demo_sigterm")
    started = demo.parent / ".demo_sigterm.partial" / "run" / "config.yaml"  # training has begun
    cases.append(Case("outputs", "demo SIGTERM in training over an earlier report",
                      ["demo", "--out", str(demo), *sets(DEMO_TINY + ["data.train=synthetic:2000:0", "optim.epochs=4"])],
                      "any", check=report, during=signal_when(started.exists, signal.SIGTERM, delay=1.0)))

    # --out the input folder: an output must never replace an input.
    own = ws / "outputs" / "images_and_own_overlay"
    face_image(own / "face.png", 96)
    face_image(own / "face_landmarks.png", 96, index=3)  # the user's own file of the overlay's name
    cases.append(Case("outputs", "predict --out the input folder, an input named as an overlay",
                      ["predict", str(run), str(own), "--out", str(own)],
                      check=unchanged({p: p.read_bytes() for p in own.iterdir()}, own)))

    # Output paths that are links to a file outside --out: replaced, the file they point to kept.
    outside = write_json(ws / "outside" / "keep.txt", "keep me")
    video = face_video(ws / "inputs" / "clip.avi", 12)
    for what, inputs, names in [("image", [image], ["predictions.json", "predictions.csv", "face_landmarks.png"]),
                                ("video", [str(video)], ["clip.csv", "clip_labelled.mp4"])]:
        folder = ws / "outputs" / f"links_{what}"
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).symlink_to(outside)
        cases.append(Case("outputs", f"predict {what} outputs that are links out of --out",
                          ["predict", str(run), *inputs, "--out", str(folder)], "ok",
                          check=links_replaced(folder, {outside: outside.read_bytes()})))
    return cases


DEMO_TINY = ["data.train=synthetic:16:0", "data.val=synthetic:4:1", "optim.epochs=1", "model.units=1",
             "model.channels=16", "model.bottleneck=16", "model.growth=8", "threads=1", "data.workers=0"]


def sets(settings: list[str]) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def earlier_demo(folder: Path) -> tuple[Path, Callable[[str], str | None]]:
    """A finished demo report (as far as the demo can tell) and the check that it, and only it, is still there."""
    folder.mkdir(parents=True)
    report = {folder / ".dunet-demo": b"", folder / "metrics.json": b'{"trained": 1}'}
    for path, data in report.items():
        path.write_bytes(data)
    kept = unchanged(report, folder)

    def check(stdout: str) -> str | None:
        left = sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))
        return kept(stdout) or (f"left behind: {', '.join(left)}" if left else None)
    return folder, check


def face_video(path: Path, frames: int, size: int = 96) -> Path:
    import cv2

    from dunet.data.synthetic import render_face

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    for i in range(frames):
        writer.write(cv2.cvtColor(render_face(5, i, size=size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def model_cases(ws: Path, run: Path, single: Path, onnx_model: Path) -> list[Case]:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = ws / "models"
    folder.mkdir()
    models = {}
    models["garbage.safetensors"] = write_json(folder / "garbage.safetensors", "not a model at all")
    models["empty.safetensors"] = write_json(folder / "empty.safetensors", "")
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(single.read_bytes()[: single.stat().st_size // 2])
    models["truncated.safetensors"] = truncated
    with safe_open(str(single), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    card_key = "dunet_card" if "dunet_card" in metadata else "dunet_config"  # the model card, or its config
    for name, change in [("huge-units", {"units": 100000}), ("huge-landmarks", {"landmarks": 10**9}),
                         ("huge-channels", {"channels": 10**7}), ("units-text", {"units": "many"}),
                         ("negative-input", {"input_size": -64})]:
        card = json.loads(metadata[card_key])
        # The network of a version-2 card; a version-1 card or an older file's config keeps it under "model".
        (card["network"] if "network" in card else card.get("config", card)["model"]).update(change)
        save_file(tensors, str(folder / f"{name}.safetensors"), metadata={**metadata, card_key: json.dumps(card)})
        models[f"{name}.safetensors"] = folder / f"{name}.safetensors"
    save_file(tensors, str(folder / "config-not-json.safetensors"), metadata={**metadata, card_key: "{"})
    models["config-not-json.safetensors"] = folder / "config-not-json.safetensors"
    save_file({}, str(folder / "no-tensors.safetensors"), metadata=metadata)
    models["no-tensors.safetensors"] = folder / "no-tensors.safetensors"
    weights = next(name for name, t in tensors.items() if t.is_floating_point() and t.dim() == 4)
    save_file({**tensors, weights: torch.full_like(tensors[weights], float("nan"))},
              str(folder / "nan-weights.safetensors"), metadata=metadata)
    models["nan-weights.safetensors"] = folder / "nan-weights.safetensors"
    models["nan-weights.onnx"] = nan_onnx(onnx_model, folder / "nan-weights.onnx")
    models["pickle.pt"] = crafted_pickle(folder / "pickle.pt", ws / "PICKLE_RAN")
    models["text.onnx"] = write_json(folder / "text.onnx", "not onnx")
    for change in ("landmarks", "input"):
        models[f"{change}-mismatch.onnx"] = mismatched_onnx(onnx_model, folder / f"{change}-mismatch.onnx", change)
    models["text.xml"] = write_json(folder / "text.xml", "<net>")
    models["empty folder"] = folder / "empty_dir"
    models["empty folder"].mkdir()
    broken_run = folder / "broken_run" / "last"
    broken_run.mkdir(parents=True)
    (broken_run / "model.safetensors").write_bytes(b"")
    models["run with an empty model file"] = broken_run.parent
    models["missing"] = folder / "missing.safetensors"

    data = make_300w(ws / "data" / "models_300w", 2)
    image = str(face_image(ws / "inputs" / "face.png", 96))
    no_pickle = absent(ws / "PICKLE_RAN")
    cases = []
    for name, path in models.items():
        cases.append(Case("models", f"eval {name}", ["eval", str(path), "--data", data], check=no_pickle))
        cases.append(Case("models", f"predict {name}", ["predict", str(path), image, "--out", str(ws / "pred_models")],
                          check=no_pickle))
        if not name.endswith((".onnx", ".xml")):
            cases.append(Case("models", f"export {name}", ["export", str(path), "--format", "safetensors", "--out",
                                                           str(ws / "exported" / "again.safetensors")],
                              check=no_pickle))
    cases.append(Case("models", "export nan-weights.safetensors to onnx",
                      ["export", str(models["nan-weights.safetensors"]), "--format", "onnx", "--exporter",
                       "torchscript", "--out", str(ws / "exported" / "nan.onnx")]))
    cases.append(Case("models", "train init= a model of NaN weights", ["train", str(ws / "recipes" / "tiny.yaml"),
                                                                      "--out", str(ws / "init_nan"), "--set",
                                                                      f"init={models['nan-weights.safetensors']}"]))
    cases.append(Case("models", "train init= a garbage file", ["train", str(ws / "recipes" / "tiny.yaml"), "--out",
                                                              str(ws / "init_run"), "--set",
                                                              f"init={models['garbage.safetensors']}"]))
    cases.append(Case("models", "eval a 68-point model on 14-point data",
                      ["eval", str(run), "--data", make_lsp(ws / "data" / "models_lsp")]))
    return cases


def resume_cases(ws: Path, run: Path) -> list[Case]:
    cases = []
    for name, text in [("empty", ""), ("half-written", "model:\n  arch: dun"), ("a list", "- 1\n"),
                       ("malformed", "model: [\n"), ("bad value", yaml.safe_dump({**TINY, "seed": "x"}))]:
        copy = ws / "resume" / name.replace(" ", "_")
        shutil.copytree(run, copy)
        (copy / "config.yaml").write_text(text)
        cases.append(Case("resume", f"--resume with a {name} config.yaml", ["train", "--resume", "--out", str(copy)]))
    missing = ws / "resume" / "no_config"
    shutil.copytree(run, missing)
    (missing / "config.yaml").unlink()
    cases.append(Case("resume", "--resume without config.yaml", ["train", "--resume", "--out", str(missing)]))
    cases.append(Case("resume", "--resume a folder that is no run", ["train", "--resume", "--out", str(ws / "nope")]))
    damaged = ws / "resume" / "damaged_last"
    shutil.copytree(run, damaged)
    (damaged / "last" / "train_state.json").write_text("{")
    cases.append(Case("resume", "--resume with a damaged last/", ["train", "--resume", "--out", str(damaged)]))
    for room in (0, 5000):  # nothing fits; the config fits (and says epochs: 2 now), the checkpoint does not
        full = ws / "resume" / f"full_disk_{room}"
        shutil.copytree(run, full)
        cases.append(Case("resume", f"--resume on a full disk ({room} bytes free)",
                          ["train", "--resume", "--out", str(full), "--set", "optim.epochs=2"],
                          check=tree_unchanged(full, ignore=(".lock",) + (("config.yaml",) if room else ())),
                          full_disk=(full, room)))
    return cases


def race_cases(ws: Path, recipe: Path, run: Path, env: dict) -> list[Case]:
    """Something else happens while the command runs: its label file is rewritten, its model file replaced,
    a second command writes the same outputs, a signal comes while it saves."""
    cases = []
    # The label file rewritten in place (truncated, then written: an editor's save) while training reads it.
    labels = ws / "data" / "race_labels"
    rows = dlc_rows(labels)
    rows += [list(r) for r in rows[3:]] * 3  # 8 frames
    spec = write_dlc(labels, rows)
    csv_path = Path(spec.removeprefix("dlc:"))
    cases.append(Case("races", "train while its label file is rewritten",
                      ["train", str(recipe), "--out", str(ws / "race_train"),
                       *sets([f"data.train={spec}", "data.val=", "model.landmarks=4"])], "any",
                      during=rewrite_while_running(csv_path)))

    # The model file replaced by another (a garbage one) once a video's prediction has begun.
    model_run = ws / "race_model_run"
    shutil.copytree(run, model_run)
    video = face_video(ws / "inputs" / "long.avi", 200)
    out = ws / "race_video"
    cases.append(Case("races", "predict a video while its model file is replaced",
                      ["predict", str(model_run), str(video), "--out", str(out), "--backend", "torch"], "any",
                      check=whole_or_absent(out / "long.csv", 201),
                      during=replace_when(lambda: (out / "long.csv").exists(), model_run)))

    # Two predictions into one --out at once.
    images = [str(face_image(ws / "inputs" / "many" / f"f{i}.png", 96, i)) for i in range(12)]
    out = ws / "race_two_predicts"
    command = ["predict", str(run), *images, "--out", str(out)]
    cases.append(Case("races", "two predicts writing one --out", command, "ok", check=whole_or_earlier(out, {}),
                      during=alongside(command, env)))

    # SIGTERM / SIGINT while epoch 1's checkpoint is written: it must say that epoch 1 was saved.
    for name in ("SIGTERM", "SIGINT"):
        train_out = ws / f"race_{name}_save"
        saving = [train_out / ".best.tmp", train_out / ".last.tmp"]
        cases.append(Case("races", f"{name} while epoch 1 is saved", ["train", str(recipe), "--out", str(train_out)],
                          "any", check=says_what_was_saved(train_out), wrong="silent",
                          during=signal_when(lambda saving=saving: any(p.exists() for p in saving),
                                             getattr(signal, name))))
    return cases


def rewrite_while_running(path: Path) -> Callable[[subprocess.Popen], str | None]:
    """A `during`: rewrite `path` in place, cut in half and whole by turns, until the command ends."""
    whole = path.read_bytes()

    def during(process: subprocess.Popen) -> str | None:
        while process.poll() is None:
            for data in (whole[: len(whole) // 2], whole):
                with open(path, "wb") as handle:
                    handle.write(data)
                time.sleep(0.002)
        path.write_bytes(whole)
        return None
    return during


def replace_when(condition: Callable[[], bool], run: Path) -> Callable[[subprocess.Popen], str | None]:
    """A `during`: once `condition()` holds, replace every model file of `run` with garbage."""
    def during(process: subprocess.Popen) -> str | None:
        while process.poll() is None and not condition():
            time.sleep(0.001)
        for model in run.rglob("model.safetensors"):
            model.write_bytes(b"replaced by something else")
        return None
    return during


def alongside(command: list[str], env: dict) -> Callable[[subprocess.Popen], str | None]:
    """A `during`: run the same `dunet` command at the same time; what went wrong with it, if anything."""
    def during(_process: subprocess.Popen) -> str | None:
        other = subprocess.run([sys.executable, "-m", "dunet", *command], cwd=REPO, capture_output=True, text=True,
                               env=env)
        if "Traceback" in other.stderr:
            return "the second command: a traceback"
        return f"the second command failed: {message_lines(other.stderr)[-1:]}" if other.returncode else None
    return during


def whole_or_absent(table: Path, rows: int) -> Callable[[str], str | None]:
    """`table` (a video's CSV) is absent (the command stopped before it) or has all its rows."""
    def check(_stdout: str) -> str | None:
        if not table.exists():
            return None
        found = table.read_text().count("\n")
        return None if found == rows else f"{table.name}: {found} of {rows} rows"
    return check


def says_what_was_saved(run: Path) -> Callable[[str], str | None]:
    """What an interrupted training says it saved matches what `last/` holds."""
    def check(stdout: str) -> str | None:
        if "nothing saved" in stdout and (run / "last").exists():
            return "said nothing was saved, but last/ holds an epoch"
        if "holds epoch" in stdout and not (run / "last").exists():
            return "said an epoch was saved, but there is no last/"
        return None
    return check


def card_cases(ws: Path, run: Path) -> list[Case]:
    cases = []
    out = ws / "exported" / "carded.safetensors"
    for name, content in [("bad json", "{not json"), ("a list", "[1, 2]"), ("a string", '"notes"'),
                          ("not utf-8", b"\xff\xfe\x00{"), ("empty", ""), ("a folder", None)]:
        path = ws / "cards" / name.replace(" ", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        cases.append(Case("card", f"export --card {name}", ["export", str(run), "--format", "safetensors",
                                                            "--out", str(out), "--card", str(path)]))
    cases.append(Case("card", "export --card missing file", ["export", str(run), "--format", "safetensors",
                                                             "--out", str(out), "--card", str(ws / "nocard.json")]))
    return cases


def info_cases() -> list[Case]:
    cases = []
    for flags in (["--units", "100000"], ["--units", "0"], ["--units", "-1"], ["--landmarks", "100000000"],
                  ["--landmarks", "0"], ["--input-size", "100000"], ["--input-size", "0"], ["--input-size", "30"],
                  ["--channels", "-1"], ["--channels", "1000000"], ["--order", "-1"], ["--order", "1000"],
                  ["--quant", "nonsense"], ["--quant", "99/99/99"], ["--arch", "hourglass", "--units", "100000"]):
        cases.append(Case("info", f"info {' '.join(flags)}", ["info", *flags]))
    return cases


def control_cases(ws: Path, run: Path) -> list[Case]:
    """Valid inputs that must succeed: the harness itself works, and faults that must be survived are."""
    image = str(face_image(ws / "inputs" / "face.png", 96))
    good = make_300w(ws / "data" / "control_300w", 4)
    with_bad = ws / "data" / "control_300w_one_bad"
    make_300w(with_bad, 4)
    face_image(with_bad / "face9.jpg", index=9)
    (with_bad / "face9.pts").write_text(pts_text(face_points(index=9)))
    (with_bad / "face9.jpg").write_bytes((with_bad / "face9.jpg").read_bytes()[:200])
    cases = [Case("control", "data check 300w", ["data", "check", good], "ok"),
             Case("control", "info", ["info", "--units", "2"], "ok"),
             Case("control", "predict", ["predict", str(run), image, "--out", str(ws / "pred_ok")], "ok"),
             Case("control", "eval", ["eval", str(run), "--data", good], "ok"),
             Case("control", "eval --skip-bad counts each good sample once",
                  ["eval", str(run), "--data", f"300w:{with_bad}", "--skip-bad", "--json"], "ok",
                  check=lambda out: None if json.loads(out.strip().splitlines()[-1]).get("n") == 4
                  else f"n = {json.loads(out.strip().splitlines()[-1]).get('n')}, not 4"),
             Case("control", "export safetensors", ["export", str(run), "--format", "safetensors", "--out",
                                                    str(ws / "exported" / "ok.safetensors")], "ok")]
    for maker in (lambda d: f"coco:{write_json(d / 'k.json', coco_json(d))}",
                  lambda d: f"mpii:{write_json(d / 'm.json', mpii_json(d))}", lambda d: write_dlc(d, dlc_rows(d)),
                  make_lsp, lambda d: make_lsp(d, "lspet")):
        folder = ws / "data" / f"control_{len(cases)}"
        folder.mkdir(parents=True)
        spec = maker(folder)
        cases.append(Case("control", f"data check {spec.split(':')[0]}", ["data", "check", spec], "ok"))
    return cases


# --- checks of what a case left behind -------------------------------------------------------------------


def unchanged(files: dict[Path, bytes], folder: Path | None = None) -> Callable[[str], str | None]:
    """The files still hold these bytes (and `folder` holds nothing else: no stray temporary file)."""
    def check(_stdout: str) -> str | None:
        for path, data in files.items():
            if not path.is_file() or path.read_bytes() != data:
                return f"{path.name} changed or gone"
        extra = sorted(p.name for p in folder.iterdir() if p not in files) if folder else []
        return f"left behind: {', '.join(extra)}" if extra else None
    return check


def whole_or_earlier(folder: Path, earlier: dict[Path, bytes]) -> Callable[[str], str | None]:
    """Every output is the earlier file or a whole new one (JSON that parses, a PNG that decodes); nothing else."""
    def check(_stdout: str) -> str | None:
        for path in folder.iterdir():
            if path in earlier and path.read_bytes() == earlier[path]:
                continue
            try:
                if path.suffix == ".json":
                    json.loads(path.read_text())
                elif path.suffix == ".png":
                    Image.open(path).load()
                elif path.suffix != ".csv" or not path.read_text().endswith("\n"):
                    return f"left behind: {path.name}"
            except Exception:
                return f"half-written: {path.name}"
        return None
    return check


def in_stdout(text: str) -> Callable[[str], str | None]:
    return lambda stdout: None if text in stdout else f"{text!r} not in the output"


def links_replaced(folder: Path, outside: dict[Path, bytes]) -> Callable[[str], str | None]:
    """No link is left in `folder`, and the files outside it that links pointed to are unchanged."""
    def check(_stdout: str) -> str | None:
        links = sorted(p.name for p in folder.iterdir() if p.is_symlink())
        changed = sorted(p.name for p, data in outside.items() if p.read_bytes() != data)
        return (f"written through a link to {', '.join(changed)}" if changed else None) or (
            f"links left: {', '.join(links)}" if links else None)
    return check


def tree_unchanged(folder: Path, ignore: tuple[str, ...] = ()) -> Callable[[str], str | None]:
    """Every file under `folder` (but those named in `ignore`) holds the bytes it holds now, and no file is added."""
    def snapshot() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ignore}

    before = snapshot()

    def check(_stdout: str) -> str | None:
        after = snapshot()
        changed = [p.name for p in before if after.get(p) != before[p]]
        added = [p.name for p in after if p not in before]
        return (f"changed or gone: {', '.join(changed)}" if changed else None) or (
            f"left behind: {', '.join(added)}" if added else None)
    return check


def signal_when(condition: Callable[[], bool], number: int, delay: float = 0.0):
    """A `during`: send signal `number` to the command once `condition()` holds (after `delay` seconds)."""
    def during(process: subprocess.Popen) -> str | None:
        while process.poll() is None:
            if condition():
                time.sleep(delay)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(number)
                return None
            time.sleep(0.001)
        return None
    return during


def absent(path: Path) -> Callable[[str], str | None]:
    return lambda _stdout: f"{path.name} exists: a pickle ran" if path.exists() else None


def crafted_pickle(path: Path, marker: Path) -> Path:
    """A torch-style .pt file whose unpickling would create `marker`."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.write_bytes(pickle.dumps(Payload()))
    return path


def nan_onnx(good: Path, path: Path) -> Path:
    """The ONNX model with its first convolution's weights NaN (written by hand: export refuses such a model)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(good))
    first = next(t for t in proto.graph.initializer if len(t.dims) == 4)
    values = numpy_helper.to_array(first).copy()
    values[...] = np.nan
    first.CopyFrom(numpy_helper.from_array(values, first.name))
    onnx.save(proto, str(path))
    return path


def mismatched_onnx(good: Path, path: Path, change: str) -> Path:
    """The ONNX model with metadata that no longer fits its graph (32 px in, 68 heatmaps out): change
    "landmarks" claims 5 landmarks (with a spec of 5 points), "input" claims a 64 px input."""
    import onnx

    proto = onnx.load(str(good))
    for prop in proto.metadata_props:
        if not prop.value.startswith("{"):
            if prop.key.endswith("input_size") and change == "input":
                prop.value = "64"
            continue
        value = json.loads(prop.value)
        # The network as model_config, the card's "network" and the training config's "model" describe it.
        for model in (value, value.get("network", {}), value.get("model", {})):
            if change == "landmarks" and isinstance(model.get("landmarks"), int):  # the card's "landmarks" is a spec
                model["landmarks"] = 5
            if change == "input" and "input_size" in model:
                model["input_size"] = 64
        if change == "input" and "codec" in value:  # the card agrees with itself: only the graph disagrees
            value["codec"]["input_size"] = value["input"]["size"] = 64
        spec = value.get("landmarks")
        if change == "landmarks" and isinstance(spec, dict):
            spec.update(name="five", keypoints=spec["keypoints"][:5], normaliser=["bbox", None], flip_pairs=[],
                        skeleton=[], groups=[], subsets=[], eye_centres=None, scored=None)
        prop.value = json.dumps(value)
    onnx.save(proto, str(path))
    return path


# --- running ---------------------------------------------------------------------------------------------


def run_case(case: Case, env: dict, timeout: float) -> dict:
    command = [sys.executable, "-m", "dunet", *case.args]
    if case.full_disk:
        folder, room = case.full_disk
        command = [sys.executable, "-m", "tests.full_disk", str(folder), str(room), *case.args]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, errors="replace", start_new_session=True, preexec_fn=cap_memory)
    beside: dict[str, str | None] = {}
    watcher = threading.Thread(target=lambda: beside.update(problem=case.during(process)), daemon=True)
    if case.during is not None:
        watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the data-loading workers go too
        stdout, stderr = process.communicate()
        timed_out = True
    if case.during is not None:
        watcher.join(timeout)
    problem = beside.get("problem")
    if not timed_out and case.check is not None and problem is None:
        try:
            problem = case.check(stdout)
        except Exception as err:  # an unreadable result is a wrong result
            problem = f"check failed: {type(err).__name__}: {err}"
    outcome = classify(case, process.returncode, stderr, timed_out, problem)
    message = message_lines(stderr)
    return {"category": case.category, "case": case.name, "command": "dunet " + " ".join(case.args),
            "full_disk": [str(case.full_disk[0]), case.full_disk[1]] if case.full_disk else None,
            "expect": case.expect, "outcome": outcome, "exit": process.returncode,
            "seconds": round(time.monotonic() - start, 1), "problem": problem,
            "stderr_lines": len(message), "stderr_tail": "\n".join(message[-3:])[-600:]}


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of stderr, less argparse's usage text before its one "error:" line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage: "):
        errors = [i for i, line in enumerate(lines) if ": error: " in line]
        return lines[errors[0]:] if errors else lines
    return lines


def classify(case: Case, code: int, stderr: str, timed_out: bool, problem: str | None) -> str:
    if timed_out:
        return "hang"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    interrupted = case.expect == "any" and code == 130  # SIGTERM or Ctrl-C, handled: "interrupted"
    if (code < 0 or code >= 128) and not interrupted:
        return "crash"
    if case.expect == "any":
        return (case.wrong or "lost") if problem else "ok"
    if case.expect == "ok":
        return "refused" if code else (case.wrong or "silent") if problem else "ok"
    if code == 0:
        return "silent"
    return (case.wrong or "lost") if problem else "clean"


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def setup(ws: Path, env: dict) -> tuple[Path, Path, Path, Path]:
    """A tiny trained run, its single-file and ONNX exports, and the recipe it was trained with."""
    recipe = write_json(ws / "recipes" / "tiny.yaml", yaml.safe_dump(TINY))
    run = ws / "run"
    single, onnx_model = ws / "exported" / "tiny.safetensors", ws / "exported" / "tiny.onnx"
    for args in (["train", str(recipe), "--out", str(run)],
                 ["export", str(run), "--format", "safetensors", "--out", str(single)],
                 ["export", str(run), "--format", "onnx", "--exporter", "torchscript", "--out", str(onnx_model)]):
        subprocess.run([sys.executable, "-m", "dunet", *args], cwd=REPO, env=env, check=True, capture_output=True)
    return recipe, run, single, onnx_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="categories to run (default: all)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--keep", help="build the cases in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    ws = Path(args.keep or tempfile.mkdtemp(prefix="dunet-bad-inputs-")).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "DUNET_CACHE": str(ws / "cache"), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    recipe, run, single, onnx_model = setup(ws, env)
    builders = {"control": lambda: control_cases(ws, run), "data": lambda: data_cases(ws),
                "flags": lambda: flag_cases(ws, recipe, run), "boxes": lambda: box_cases(ws, run),
                "outputs": lambda: output_cases(ws, run, onnx_model),
                "models": lambda: model_cases(ws, run, single, onnx_model),
                "resume": lambda: resume_cases(ws, run), "card": lambda: card_cases(ws, run), "info": info_cases,
                "races": lambda: race_cases(ws, recipe, run, env)}
    unknown = set(args.only or ()) - set(builders)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}; choose from {sorted(builders)}")
    cases = [case for name, build in builders.items() if not args.only or name in args.only for case in build()]

    rows = []
    for i, case in enumerate(cases, 1):
        row = run_case(case, env, args.timeout)
        rows.append(row)
        print(f"[{i}/{len(cases)}] {row['outcome']:9} {row['seconds']:6.1f} s  {case.category}: {case.name}",
              flush=True)
    print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": machine(), "python": platform.python_version(), "timeout_s": args.timeout,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "counts": dict(Counter(r["outcome"] for r in rows)), "cases": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    if not args.keep:
        shutil.rmtree(ws, ignore_errors=True)
    return 0


def print_table(rows: list[dict]) -> None:
    categories = list(dict.fromkeys(r["category"] for r in rows))
    print(f"\n{'category':10}" + "".join(f"{o:>10}" for o in OUTCOMES) + f"{'total':>8}")
    for name in [*categories, "all"]:
        counts = Counter(r["outcome"] for r in rows if name in ("all", r["category"]))
        print(f"{name:10}" + "".join(f"{counts[o]:>10}" for o in OUTCOMES) + f"{sum(counts.values()):>8}")
    wrong = [r for r in rows if r["outcome"] not in GOOD]
    if wrong:
        print(f"\n{len(wrong)} case(s) went wrong:")
        for r in wrong:
            detail = r["problem"] or (r["stderr_tail"].splitlines() or [""])[-1]
            print(f"  {r['outcome']:9} {r['category']}: {r['case']}: {detail[:200]}")
    multiline = [r for r in rows if r["outcome"] == "clean" and r["stderr_lines"] > 1]
    if multiline:
        print(f"\n{len(multiline)} clean refusal(s) took more than one line of stderr (argparse's usage aside):")
        for r in multiline:
            print(f"  {r['category']}: {r['case']}: {r['stderr_lines']} lines")


if __name__ == "__main__":
    sys.exit(main())
