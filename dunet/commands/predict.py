"""`dunet predict (CHECKPOINT | --model NAME) IMAGE_OR_DIR... [--box x,y,w,h] [--out DIR]`

Writes `predictions.json` (landmarks in original-image pixels) and an overlay PNG per image. Photos are
turned upright by their EXIF orientation first (as viewers show them; `--ignore-exif` to keep the stored
pixel grid), and coordinates refer to that upright image."""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict landmarks on images, folders or globs")
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory, .safetensors, .onnx or OpenVINO .xml model")
    p.add_argument("inputs", nargs="*", help="images, folders or glob patterns")
    p.add_argument("--model", help="name of a pretrained model (see `dunet models`)")
    p.add_argument("--box", help="x,y,w,h of the face or person in every image (default: the whole image)")
    p.add_argument("--detect-faces", action="store_true",
                   help="find faces with OpenCV's bundled Haar cascade (offline) and predict each")
    p.add_argument("--out", default="predictions", help="output folder")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bfloat16 where the CPU or GPU computes it natively, else fp32")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "openvino"],
                   help="what runs the network: PyTorch (checkpoints), onnxruntime (.onnx) or OpenVINO "
                        "(.onnx or .xml; the fastest on a CPU, see docs/deployment.md)")
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--ignore-exif", action="store_true",
                   help="use the stored pixel grid, not the EXIF-rotated image (coordinates follow)")
    p.set_defaults(func=run)


def expand_inputs(items: list[str]) -> list[Path]:
    from dunet import DunetError

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DunetError(f"{path}: no images in this folder")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DunetError(f"{item}: the pattern matches no images")
            paths.extend(found)
        else:
            raise DunetError(f"{item}: no such file or folder")
    return paths


def parse_box(text: str) -> tuple[float, float, float, float]:
    from dunet import DunetError

    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise DunetError(f"--box {text!r}: expected x,y,w,h (four numbers)") from None
    if w <= 0 or h <= 0:
        raise DunetError(f"--box {text!r}: width and height must be positive")
    return x, y, w, h


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from dunet import DunetError
    from dunet.data.draw import draw_overlay
    from dunet.data.dataset import crop_image
    from dunet.data.images import load_image
    from dunet.engine.inference import load_runner

    # With --model, every positional argument is an input.
    inputs = list(args.inputs)
    checkpoint = args.checkpoint
    if args.model is not None and checkpoint is not None:
        inputs.insert(0, checkpoint)
        checkpoint = None
    if not inputs:
        raise DunetError("give at least one image, folder or glob to predict on")
    runner = load_runner(checkpoint, args.model, backend=args.backend, precision=args.precision,
                         device=args.device)
    paths = expand_inputs(inputs)
    fixed_box = parse_box(args.box) if args.box else None
    margin = runner.spec.box_margin
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # (path, image, box, crop, crop_to_image) per instance, predicted in batches.
    jobs = []
    results = {str(p): {"image": str(p), "instances": []} for p in paths}
    for path in paths:
        image = load_image(path, upright=not args.ignore_exif)  # DunetError naming the file if it is unreadable
        height, width = image.shape[:2]
        results[str(path)].update(width=width, height=height)
        if fixed_box is not None:
            boxes = [fixed_box]
        elif args.detect_faces:
            from dunet.deploy.detect import detect_faces

            boxes = detect_faces(image)
            if not boxes:
                print(f"{path}: no face found")
        else:
            boxes = [(0.0, 0.0, float(width), float(height))]
        for box in boxes:
            x, y, w, h = box
            center = np.array([x + w / 2 - 0.5, y + h / 2 - 0.5])
            # A given box is the object's box: add the spec's context margin; the whole image is used as is.
            side = max(w, h) * (margin if (fixed_box is not None or args.detect_faces) else 1.0)
            crop, affine = crop_image(image, center, side, runner.input_size)
            jobs.append((str(path), image, box, crop, affine))

    for start in range(0, len(jobs), args.batch_size):
        chunk = jobs[start:start + args.batch_size]
        images = torch.stack([j[3] for j in chunk])
        affines = torch.stack([j[4] for j in chunk])
        coords, peaks = runner.predict_crops(images, affines)
        for (path, image, box, _, _), pts, score in zip(chunk, coords, peaks):
            results[path]["instances"].append({
                "box": [round(float(v), 2) for v in box],
                "landmarks": [[round(float(a), 2), round(float(b), 2)] for a, b in pts],
                "scores": [round(float(s), 4) for s in score],
            })
    summary = {"model": runner.name, "landmarks": list(runner.spec.keypoints), "images": list(results.values())}
    (out / "predictions.json").write_text(json.dumps(summary, indent=1))
    if not args.no_overlays:
        for path in paths:
            entry = results[str(path)]
            canvas = load_image(path, upright=not args.ignore_exif)
            for inst in entry["instances"]:
                pts = np.array(inst["landmarks"], dtype=np.float32)
                canvas = draw_overlay(canvas, pts, np.ones(len(pts)), runner.spec)
            Image.fromarray(canvas).save(out / f"{path.stem}_landmarks.png")
    n = sum(len(r["instances"]) for r in results.values())
    print(f"predicted {n} instance(s) in {len(paths)} image(s) -> {out / 'predictions.json'}")
    return 0
