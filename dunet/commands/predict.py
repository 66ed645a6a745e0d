"""`dunet predict (CHECKPOINT | --model NAME) IMAGE_OR_VIDEO_OR_DIR... [--box x,y,w,h | --boxes FILE] [--out DIR]`

A thin layer over the Python API (`dunet.load`, `dunet.video.process_video`). Images: `predictions.json`
and `predictions.csv` (landmarks in original-image pixels, a score in [0, 1] per landmark) and an overlay
PNG per image (drawn on a copy reduced to at most OVERLAY_SIDE px for larger images). Videos: a per-frame
CSV and a labelled video each. Photos are turned upright by their EXIF orientation first (coordinates refer
to that upright image). Each image output is written to a temporary file and renamed into place, so a full
disk leaves the earlier file, never a half-written one, and says what was written."""

from __future__ import annotations

import argparse
import csv
import glob
import json
from pathlib import Path

from dunet.commands import add_model_flags, check_out, model_and_inputs
from dunet.config import flag_range

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
OVERLAY_SIDE = 4096  # an overlay of a larger image is drawn on a copy reduced 2, 4 or 8 times
OVERLAY_SUFFIX = "_landmarks.png"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict landmarks on images, videos, folders or globs")
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory, .safetensors, .onnx or OpenVINO .xml model")
    p.add_argument("inputs", nargs="*", help="images, videos (mp4, avi, mov, ...), folders or glob patterns")
    p.add_argument("--box", help="x,y,w,h of the face or person in every image (default: as the model's detector "
                                 "finds them, else the whole image)")
    p.add_argument("--boxes", metavar="FILE",
                   help="boxes per image: JSON {\"image name\": [x,y,w,h] or [[x,y,w,h], ...]} or CSV rows "
                        "image,x,y,w,h (several rows per image for several objects)")
    p.add_argument("--detect-faces", action=argparse.BooleanOptionalAction,
                   help="find the faces (BlazeFace) or people (BlazePose's person detector) offline and predict "
                        "each (default: on for a shipped face or pose model, or a file exported from one, given "
                        "no --box; a model that names no detector: faces)")
    p.add_argument("--all", action="store_true",
                   help="every person found per image (default: the most prominent one); faces: always every face")
    p.add_argument("--out", default="predictions", help="output folder")
    add_model_flags(p, batch_size=8)
    p.add_argument("--no-overlays", action="store_true", help="no overlay images or labelled videos")
    p.add_argument("--ignore-exif", action="store_true",
                   help="use the stored pixel grid, not the EXIF-rotated image (coordinates follow)")
    video = p.add_argument_group("videos")
    video.add_argument("--every", type=flag_range(int, 1), default=1, metavar="N", help="predict every N-th frame")
    video.add_argument("--start", type=flag_range(float, 0.0), default=0.0, metavar="SECONDS",
                       help="start this far into the video")
    video.add_argument("--end", type=flag_range(float, 0.0), metavar="SECONDS", help="stop this far into the video")
    video.add_argument("--smooth", action="store_true", help="smooth the points over time (One Euro filter)")
    video.add_argument("--people", type=flag_range(int, 1), default=1, metavar="N",
                       help="pose models: follow up to N people, an id each, a column group per person in the CSV")
    video.add_argument("--no-tracking", action="store_true",
                       help="do not follow the object: use the box, detector or whole frame on every frame")
    p.set_defaults(func=run)


def expand_inputs(items: list[str]) -> list[Path]:
    from dunet import DunetError
    from dunet.video import VIDEO_SUFFIXES

    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
            if not found:
                raise DunetError(f"{path}: no images or videos in this folder")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in suffixes)
            if not found:
                raise DunetError(f"{item}: the pattern matches no images or videos")
            paths.extend(found)
        else:
            raise DunetError(f"{item}: no such file or folder")
    return paths


def parse_box(text: str, where: str = "--box") -> tuple[float, float, float, float]:
    """Four finite numbers with a positive size; whether the box fits the image is checked per image."""
    import math

    from dunet import DunetError

    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise DunetError(f"{where} {text!r}: expected x,y,w,h (four numbers)") from None
    if len(values) != 4:
        raise DunetError(f"{where} {text!r}: expected x,y,w,h (four numbers)")
    if not all(math.isfinite(v) for v in values):
        raise DunetError(f"{where} {text!r}: not a finite number")
    if values[2] <= 0 or values[3] <= 0:
        raise DunetError(f"{where} {text!r}: width and height must be positive")
    return values


def read_boxes(path: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """--boxes FILE: image name -> boxes, from JSON ({name: box or [box, ...]}) or CSV (name,x,y,w,h rows)."""
    from dunet import DunetError

    file = Path(path)
    if not file.is_file():
        raise DunetError(f"--boxes {file}: no such file")
    boxes: dict[str, list] = {}
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DunetError(f"--boxes {file}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise DunetError(f"--boxes {file}: expected an object {{\"image name\": [x, y, w, h], ...}}")
        for name, value in data.items():
            if not isinstance(value, list):
                raise DunetError(f"--boxes {file}: {name}: expected [x, y, w, h] or a list of them, got {value!r}")
            items = value if value and all(isinstance(item, list) for item in value) else [value]
            boxes[name] = [parse_box(",".join(str(v) for v in item), f"--boxes {file}: {name}") for item in items]
        return boxes
    with open(file, newline="") as handle:
        for line, row in enumerate(csv.reader(handle), 1):
            if not row or row[0].startswith("#") or (line == 1 and row[0].strip().lower() in ("image", "name", "file")):
                continue
            if len(row) != 5:
                raise DunetError(f"--boxes {file}:{line}: expected image,x,y,w,h, got {len(row)} fields")
            boxes.setdefault(row[0].strip(), []).append(parse_box(",".join(row[1:]), f"--boxes {file}:{line}"))
    return boxes


def boxes_of(path: Path, table: dict) -> list:
    """The --boxes entry of an image: by the path as given, its file name or its stem."""
    from dunet import DunetError

    for key in (str(path), path.name, path.stem):
        if key in table:
            return table[key]
    raise DunetError(f"{path}: not in the --boxes file (looked for {path.name!r})")


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A distinct output name per input: the stem, or, where stems collide (a/x.jpg, b/x.jpg, x.png), the
    path relative to the inputs' common folder with its separators and dots as underscores."""
    import os
    from collections import Counter

    stems = Counter(p.stem for p in paths)
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths])) if paths else Path(".")
    names = {}
    for p in paths:
        if stems[p.stem] == 1:
            names[p] = p.stem
        else:
            names[p] = str(p.resolve().relative_to(common)).replace(os.sep, "_").replace(".", "_")
    return names


def looks_like_inputs(path: str) -> bool:
    """An image or video file, a glob, or a folder that holds no model (a run directory has config.yaml or last/),
    given where the model goes: the most common slip is `dunet predict photos/` without --model."""
    from dunet.video import VIDEO_SUFFIXES

    candidate = Path(path)
    if any(c in path for c in "*?["):
        return True
    if candidate.is_dir():
        return not any((candidate / name).exists() for name in ("config.yaml", "last", "model.safetensors", "card.json"))
    return candidate.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def run(args: argparse.Namespace) -> int:
    from dunet import DunetError
    from dunet.api import load
    from dunet.data.images import image_size
    from dunet.video import is_video, process_video

    checkpoint, inputs = model_and_inputs(args.checkpoint, args.inputs, args.model)
    if checkpoint is not None and looks_like_inputs(checkpoint):
        raise DunetError(f"{checkpoint} looks like images or videos to predict on, not a model: add --model NAME "
                         "(--model face for faces, --model pose for people; `dunet models` lists them) or give a "
                         "run directory or model file first")
    if not inputs:
        raise DunetError("give at least one image, video, folder or glob to predict on")
    if args.box is not None and args.boxes is not None:
        raise DunetError("give either --box or --boxes, not both")
    out = Path(args.out)
    check_out(out, folder=True)
    paths = expand_inputs(inputs)
    fixed_box = parse_box(args.box) if args.box is not None else None
    table = read_boxes(args.boxes) if args.boxes is not None else None
    names = output_names(paths)
    images = [p for p in paths if not is_video(p)]
    videos = [p for p in paths if is_video(p)]
    check_outputs_spare_inputs(out, images, videos, names, overlays=not args.no_overlays)
    landmarker = load(checkpoint or args.model, backend=args.backend, precision=args.precision, device=args.device,
                      threads=args.threads, detect_faces=args.detect_faces, flip=args.flip, batch_size=args.batch_size)
    runner = landmarker.runner
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DunetError(f"--out {out}: cannot create the folder ({err.strerror or err})") from None

    for path in videos:
        box = fixed_box if table is None else boxes_of(path, table)[0]
        summary = process_video(landmarker, path, out, name=names[path], every=args.every, start=args.start,
                                end=args.end, box=box, smooth=args.smooth, track=not args.no_tracking,
                                labelled=not args.no_overlays, people=args.people)
        print(summary.line())
    if not images:
        return 0

    def boxes_for(path):
        if fixed_box is None and table is None:
            return None
        return [fixed_box] if table is None else boxes_of(path, table)

    # predict_batch decodes each file no larger than its crops need (a DunetError naming it if unreadable).
    upright = not args.ignore_exif
    results = landmarker.predict_batch(images, (boxes_for(p) for p in images), upright=upright,
                                       largest=landmarker.finds == "person" and not args.all)
    entries = []
    for path, found in zip(images, results):
        width, height = image_size(path, upright=upright)
        entries.append({"image": str(path), "width": width, "height": height,
                        "instances": [r.to_dict() for r in found]})
    summary = {"model": runner.name, "landmarks": list(landmarker.names),
               "score": "heatmap peak clipped to [0, 1] (see docs/api.md)", "images": entries}
    shown = [(path, found) for path, found in zip(images, results) if found] if not args.no_overlays else []
    outputs = Outputs(out, overlays=len(shown))
    outputs.write("predictions.json", json.dumps(summary, indent=1).encode())
    outputs.write("predictions.csv", csv_text(images, results, landmarker.names).encode())
    for path, found in shown:
        outputs.write(names[path] + OVERLAY_SUFFIX, overlay_png(path, found, landmarker.spec, upright))
    n = sum(len(r) for r in results)
    print(f"predicted {n} instance(s) in {len(images)} image(s) -> {out / 'predictions.json'}, {out / 'predictions.csv'}")
    empty = [p for p, found in zip(images, results) if not found]
    if empty:
        listed = ", ".join(p.name for p in empty[:5]) + (", ..." if len(empty) > 5 else "")
        print(f"no {landmarker.finds or 'object'} found in {len(empty)} image(s), no overlay written: {listed}")
    return 0


def check_outputs_spare_inputs(out: Path, images: list[Path], videos: list[Path], names: dict[Path, str],
                               overlays: bool) -> None:
    """A DunetError, before any work, if an output would replace one of the inputs (--out IMAGES over a folder
    that holds a_landmarks.png beside a.jpg overwrote the user's file with the overlay of a.jpg)."""
    from dunet import DunetError
    from dunet.video import video_outputs

    planned = {out / name: "predictions" for name in ("predictions.json", "predictions.csv") if images}
    for path in images if overlays else []:
        planned[out / (names[path] + OVERLAY_SUFFIX)] = f"the overlay of {path.name}"
    for path in videos:
        table, labelled = video_outputs(out, names[path])
        planned[table] = f"the table of {path.name}"
        if overlays:
            planned[labelled] = f"the labelled video of {path.name}"
    inputs = {p.resolve() for p in images + videos}
    for target, what in planned.items():
        if target.resolve() in inputs:
            raise DunetError(f"--out {out}: {what} would replace {target}, one of the inputs; choose another --out")


class Outputs:
    """The files of one prediction in OUT, each written atomically (dunet.checkpoint's temporary file, fsync
    and rename): a failed write (a full disk) leaves any earlier file of that name as it was and is one line
    naming the file and what this prediction had already written."""

    def __init__(self, folder: Path, overlays: int):
        self.folder = folder
        self.overlays = overlays
        self.written: list[str] = []

    def write(self, name: str, data: bytes) -> None:
        from dunet import DunetError
        from dunet.files import atomic_write_file

        try:
            atomic_write_file(self.folder / name, data, what="this output")
        except DunetError as err:
            raise DunetError(f"{err}; {self.done()}") from None
        self.written.append(name)

    def done(self) -> str:
        """What is written so far, e.g. "predictions.json, predictions.csv and 3 of 10 overlays written to OUT"."""
        if not self.written:
            return f"nothing written to {self.folder}"
        tables = [name for name in self.written if not name.endswith(OVERLAY_SUFFIX)]
        overlays = len(self.written) - len(tables)
        parts = tables + ([f"{overlays} of {self.overlays} overlays"] if self.overlays else [])
        listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        return f"{listed} written to {self.folder}"


def overlay_png(path: Path, found: list, spec, upright: bool) -> bytes:
    """The PNG of the image at `path` with the landmarks of every object in `found` drawn on it; an image
    longer than OVERLAY_SIDE is decoded reduced 2, 4 or 8 times and the points follow."""
    import io

    from PIL import Image

    from dunet.data.draw import draw_overlay
    from dunet.data.images import REDUCTIONS, image_size, load_reduced

    longest = max(image_size(path, upright=upright))
    factor = next((f for f in REDUCTIONS if longest / f <= OVERLAY_SIDE), REDUCTIONS[-1])
    picture = load_reduced(path, factor, upright=upright)
    canvas = picture.pixels
    for i, r in enumerate(found):
        canvas = draw_overlay(canvas, picture.from_full(r.points), [1] * len(r.points), spec, scores=r.scores,
                              palette="keypoint", legend=i == len(found) - 1)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def csv_text(images: list[Path], results, names) -> str:
    """predictions.csv: one row per object: image, instance (0, 1, ... within the image), box, the detector's
    score of a detected person (empty otherwise), then x, y and score per landmark."""
    import io

    text = io.StringIO(newline="")
    table = csv.writer(text)
    table.writerow(["image", "instance", "box_x", "box_y", "box_w", "box_h", "detection_score"]
                   + [f"{n}_{part}" for n in names for part in ("x", "y", "score")])
    for image, found in zip(images, results):
        for i, r in enumerate(found):
            row = [str(image), i] + [f"{v:.2f}" for v in r.box]
            row.append("" if r.detection_score is None else f"{r.detection_score:.4f}")
            for (x, y), s in zip(r.points, r.scores):
                row += [f"{x:.2f}", f"{y:.2f}", f"{s:.4f}"]
            table.writerow(row)
    return text.getvalue()
