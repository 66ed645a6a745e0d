"""`dunet predict` on a huge photo: peak memory, and the accuracy of decoding files reduced.

    python bench/huge_image.py [--side 12000] [--faces 24]

1. Peak RSS of `dunet predict --model 300w-dunet4 BIG.jpg --out DIR [FLAGS]`, each in a fresh process, on a
   generated SIDE x SIDE JPEG (a face of dunet's synthetic set, upscaled), and on a 256 px image for the
   baseline of PyTorch and the model.
2. NME-io of 300-W faces (../shared/data/300w) upscaled 8x to JPEG: predicted from the file (decoded at 1/8
   or 1/4) and from its full-size pixels, with the landmarks' box.

Writes bench/results/huge_image.json; docs/research/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _timing import machine  # noqa: E402  (bench/ is on sys.path when run as a script)

RESULTS = REPO / "bench" / "results" / "huge_image.json"
SHARED_300W = REPO.parent / "shared" / "data" / "300w"
# Runs the CLI in this process, then prints its peak RSS in KiB as the last line.
PEAK_RSS = ("import resource, sys; from dunet.cli import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def upscaled_face(path: Path, side: int) -> Path:
    import cv2
    from PIL import Image

    from dunet.data.synthetic import render_face

    big = cv2.resize(render_face(0, 3, 256), (side, side), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(big).save(path, quality=90)
    return path


def generated_face(path: Path, side: int) -> Path:
    """upscaled_face in a process of its own: a child process starts with its parent's peak RSS, so the
    parent must never hold a large image."""
    subprocess.run([sys.executable, __file__, "--make-jpeg", str(path), str(side)], cwd=REPO, check=True)
    return path


def peak_rss_mib(args: list[str]) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], cwd=REPO, capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def memory(folder: Path, side: int) -> list[dict]:
    big = generated_face(folder / "big.jpg", side)
    small = generated_face(folder / "small.jpg", 256)
    quarter, half = side // 4, side // 2
    rss = peak_rss_mib(["predict", "--model", "300w-dunet4", str(small), "--out", str(folder / "out")])
    rows = [{"image": "256 px", "flags": "", "peak_rss_mib": round(rss)}]
    print(f"256 px (no flags){'':33} {rss:8.0f} MiB", flush=True)
    for flags in ([], ["--detect-faces"], ["--no-overlays"], ["--box", f"{quarter},{quarter},{half},{half}",
                                                              "--no-overlays"]):
        rss = peak_rss_mib(["predict", "--model", "300w-dunet4", str(big), "--out", str(folder / "out"), *flags])
        rows.append({"image": f"{side} px", "flags": " ".join(flags), "peak_rss_mib": round(rss)})
        print(f"{side} px {' '.join(flags) or '(no flags)':40} {rss:8.0f} MiB", flush=True)
    return rows


def accuracy(folder: Path, faces: int) -> dict | None:
    import cv2
    from PIL import Image

    import dunet
    from dunet.data.images import load_image
    from dunet.data.readers import parse_pts

    files = sorted(SHARED_300W.glob("*.pts"))[::40][:faces]
    if not files:
        print(f"{SHARED_300W}: no 300-W faces, accuracy skipped")
        return None
    model = dunet.load("300w-dunet4", backend="torch", precision="fp32")
    errors = {"own size": [], "8x, full-size pixels": [], "8x, decoded reduced": []}
    for pts in files:
        image = load_image(pts.with_suffix(".jpg"))
        truth = (parse_pts(pts)[:, :2] - 1.0 + 0.5) * 8 - 0.5  # 1-based points of the 8x image
        path = folder / "face8x.jpg"
        Image.fromarray(cv2.resize(image, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)).save(path, quality=95)
        lo, hi = truth.min(0), truth.max(0)
        box = (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        interocular = np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0))
        own = (model.predict(image, box=tuple(np.array(box) / 8)).points + 0.5) * 8 - 0.5
        predicted = {"own size": own, "8x, full-size pixels": model.predict(load_image(path), box=box).points,
                     "8x, decoded reduced": model.predict(path, box=box).points}
        for name, points in predicted.items():
            errors[name].append(np.linalg.norm(points - truth, axis=1).mean() / interocular)
    result = {name: round(100 * float(np.mean(values)), 3) for name, values in errors.items()}
    print(f"NME-io % on {len(files)} 300-W faces: {result}")
    return {"faces": len(files), "nme_io_percent": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=12000, help="side of the generated JPEG")
    parser.add_argument("--faces", type=int, default=24, help="300-W faces for the accuracy check")
    parser.add_argument("--make-jpeg", nargs=2, metavar=("PATH", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_jpeg:
        upscaled_face(Path(args.make_jpeg[0]), int(args.make_jpeg[1]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:  # memory first: the accuracy part loads PyTorch here
        result = {"machine": machine(), "memory": memory(Path(tmp), args.side)}
        result["accuracy"] = accuracy(Path(tmp), args.faces)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
