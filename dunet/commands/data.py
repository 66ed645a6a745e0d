"""`dunet data check FORMAT:PATH` and `dunet data show FORMAT:PATH --out DIR`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.config import flag_range
from dunet.data.draw import draw_overlay
from dunet.runtime.backends import import_optional


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a data source, or look at augmented samples")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser(
        "check", help="count samples and keypoints, decode every image, list every bad item",
        description="Read FORMAT:PATH (300w:DIR, lsp:DIR, mpii:FILE.json[:IMAGE_DIR], coco:FILE.json[:IMAGE_DIR], "
                    "dlc:FILE.csv, synthetic[:N[:SEED[:SIZE]]]), decode every image and report. Exit status 1 "
                    "if there are bad items (0 with --skip-bad).",
    )
    check.add_argument("source", metavar="FORMAT:PATH")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--skip-bad", action="store_true", help="bad items are expected: report them, exit 0")
    check.set_defaults(func=run_check)

    show = actions.add_parser("show", help="write overlay PNGs of samples after augmentation")
    show.add_argument("source", metavar="FORMAT:PATH")
    show.add_argument("--out", required=True, help="output folder")
    show.add_argument("-n", type=flag_range(int, 1), default=16, help="number of samples (default 16)")
    show.add_argument("--input-size", type=flag_range(int, 64, 2048), default=256,
                      help="network input size (default 256)")
    show.add_argument("--seed", type=flag_range(int, 0, 2**32 - 1), default=0,
                      help="picks the samples and their augmentation")
    show.add_argument("--no-augment", action="store_true", help="plain crops, as for evaluation")
    show.add_argument("--skip-bad", action="store_true", help="leave bad items out instead of stopping")
    show.set_defaults(func=run_show)


# --- check ---------------------------------------------------------------------------------------


def check_source(text: str) -> dict:
    """Everything `dunet data check` reports, as a dict (bad items of the reader and undecodable images)."""
    from dunet.data import open_source
    from dunet.data.images import check_image
    from dunet.data.sample import normaliser

    source = open_source(text, skip_bad=True, allow_empty=True)
    bad = [{"path": b.path, "problem": b.problem} for b in source.skipped]
    # Decode every distinct image once: truncated or corrupt files only show up here.
    first_of: dict[str, int] = {}
    for i, sample in enumerate(source.samples):
        first_of.setdefault(sample.image_path, i)
    broken: set[str] = set()
    for path, i in _progress(first_of.items(), "decoding images"):
        try:
            if source.loader is None:
                check_image(path)  # decoded at the least memory: huge scans are checked too
            else:
                source.load_image(i)
        except DunetError as err:
            broken.add(path)
            bad.append({"path": path, "problem": str(err).removeprefix(f"{path}: ")})
    good = [s for s in source.samples if s.image_path not in broken]
    spec = source.spec
    labelled = int(sum(int((s.visible > 0).sum()) for s in good))
    total = sum(s.num_keypoints for s in good)
    occluded = int(sum(int(np.sum(s.meta["occluded"] & (s.visible > 0))) for s in good if "occluded" in s.meta))
    normalisers = [normaliser(spec, s) for s in good]
    return {
        "source": text,
        "spec": spec.name,
        "samples": len(good),
        "images": len({s.image_path for s in good}),
        "keypoints_per_sample": spec.num_keypoints,
        "labelled_points": labelled,
        "unlabelled_points": total - labelled,
        "occluded_points": occluded,
        "samples_without_labels": sum(1 for s in good if not (s.visible > 0).any()),
        "flip_pairs": None if spec.flip_pairs is None else len(spec.flip_pairs),
        "normaliser": spec.normaliser[0],
        "samples_with_normaliser": sum(1 for v in normalisers if math.isfinite(v)),
        "bad": bad,
    }


def _progress(items, what: str):
    items = list(items)
    if not sys.stderr.isatty() or len(items) < 200:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, leave=False)


def run_check(args: argparse.Namespace) -> int:
    report = check_source(args.source)
    if args.json:
        print(json.dumps(report))
    else:
        pairs = report["flip_pairs"]
        flips = "none known: horizontal flip is off" if pairs is None else f"{pairs} pairs"
        rows = [
            ("source", report["source"]),
            ("landmark spec", f"{report['spec']} ({report['keypoints_per_sample']} keypoints, flip: {flips})"),
            ("samples", f"{report['samples']} in {report['images']} images"),
            ("labelled points", str(report["labelled_points"])),
            ("unlabelled points", str(report["unlabelled_points"])),
            ("occluded points", f"{report['occluded_points']} (labelled, marked occluded)"),
            ("samples without labels", str(report["samples_without_labels"])),
            ("normaliser", f"{report['normaliser']}, available for {report['samples_with_normaliser']} samples"),
            ("bad items", str(len(report["bad"]))),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
        for item in report["bad"]:
            print(f"  {item['path']}: {item['problem']}")
    if report["samples"] == 0:
        raise DunetError(f"{args.source}: no usable samples")
    return 1 if report["bad"] and not args.skip_bad else 0


# --- show ----------------------------------------------------------------------------------------

# Overlay colours (RGB): the first landmark of each flip pair, the second, and unpaired landmarks.
def run_show(args: argparse.Namespace) -> int:
    cv2 = import_optional("cv2")  # the `video` extra

    from dunet.data import LandmarkDataset, open_source

    if args.n < 1:
        raise DunetError("-n must be at least 1")
    source = open_source(args.source, skip_bad=args.skip_bad)
    dataset = LandmarkDataset(source, input_size=args.input_size, augment=not args.no_augment, seed=args.seed)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DunetError(f"{out}: cannot create output folder ({err})") from None
    order = np.random.default_rng(args.seed).permutation(len(dataset))[: args.n]
    scale = max(1, 256 // args.input_size)
    for rank, index in enumerate(order.tolist()):
        item = dataset[index]
        image = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        canvas = draw_overlay(image, item["keypoints"].numpy(), item["visible"].numpy(), dataset.spec, scale)
        params = dataset.params(int(item["index"]))
        label = f"#{int(item['index'])} rot {params.rotation:+.0f} scale {params.scale:.2f}" + (
            " flipped" if params.flip else "")
        cv2.putText(canvas, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        path = out / f"{rank:03d}_sample{int(item['index'])}.png"
        if not cv2.imwrite(str(path), canvas[:, :, ::-1]):
            raise DunetError(f"{path}: cannot write image")
    print(f"wrote {len(order)} overlays to {out} (red / blue: the two sides of each flip pair, green: unpaired)")
    return 0
