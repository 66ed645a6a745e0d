"""What `pip install .` costs a user who only wants landmarks: a fresh venv, its size, the time to install from a
warm package cache, and the time of `import dunet` plus `dunet.load("face")` on a warm disk; then that it holds
no PyTorch and predicts. Prints a table and writes JSON.

    .venv/bin/python bench/install.py --out bench/results/install_<cpu>.json

Goals (issue: a light runtime): no PyTorch, at most 400 MB, under a minute to install, import + load under 1 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS = {"venv_mb": 400, "install_s": 60, "import_load_s": 1.0}

# Run inside the fresh venv: import + load timed, then a prediction on a generated face (face.png, made by the
# calling interpreter: the generator needs OpenCV) with its box, and a faceless image that must give None.
PROBE = """
import json, sys, time
start = time.perf_counter()
import dunet
landmarker = dunet.load("face")
loaded = time.perf_counter() - start
import numpy as np
face = landmarker.predict("face.png", box=(20, 20, 120, 120))
empty = landmarker.predict(np.full((120, 160, 3), 128, np.uint8))
packed = dunet.load("300w-dunet4-bw-alpha").predict("face.png", box=(20, 20, 120, 120))
print(json.dumps({"import_load_s": loaded, "points": list(face.points.shape), "faceless": empty is None,
                  "packed_points": list(packed.points.shape), "backend": landmarker.runner.backend,
                  "torch_imported": "torch" in sys.modules, "opencv_imported": "cv2" in sys.modules}))
"""


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file to write")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that makes the venv")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from PIL import Image

    from dunet.data.synthetic import render_face
    from dunet.runtime.cpu import cpu_name

    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        Image.fromarray(render_face(3, 0, size=160)).save(Path(tmp) / "face.png")
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        bare_mb = folder_mb(venv)  # pip and setuptools: in every venv, whatever is installed
        start = time.perf_counter()
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
                       check=True)
        install_s = time.perf_counter() - start
        venv_mb = folder_mb(venv)
        has_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                                   capture_output=True).returncode == 0
        site = next((venv / "lib").glob("python*/site-packages"))
        largest = sorted(((folder_mb(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:6]
        probes = []
        for _ in range(3):  # the first run reads the files from disk; the later ones are the warm-disk figure
            out = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE], capture_output=True, text=True,
                                 cwd=tmp)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            probes.append(json.loads(out.stdout))
    probe = probes[-1]
    result = {"cpu": cpu_name(), "venv_mb": round(venv_mb, 1), "bare_venv_mb": round(bare_mb, 1),
              "install_s": round(install_s, 1), "torch_installed": has_torch,
              "import_load_s": round(min(p["import_load_s"] for p in probes[1:]), 3),
              "cold_import_load_s": round(probes[0]["import_load_s"], 3),
              "largest_packages_mb": {name: round(mb, 1) for mb, name in largest},
              **{k: probe[k] for k in ("backend", "points", "faceless", "packed_points", "torch_imported",
                                        "opencv_imported")},
              "goals": GOALS}
    rows = [("venv size", f"{venv_mb:.0f} MB ({bare_mb:.0f} MB of it pip and setuptools)", venv_mb <= GOALS["venv_mb"]),
            ("install, warm cache", f"{install_s:.1f} s", install_s <= GOALS["install_s"]),
            ("import dunet + load('face'), warm disk", f"{result['import_load_s']:.2f} s (cold {result['cold_import_load_s']:.2f} s)",
             result["import_load_s"] <= GOALS["import_load_s"]),
            ("PyTorch installed / imported", f"{has_torch} / {probe['torch_imported']}", not has_torch and not probe["torch_imported"]),
            ("OpenCV imported", f"{probe['opencv_imported']}", not probe["opencv_imported"]),
            ("predicts (backend)", f"{probe['points']} points by {probe['backend']}; packed 1-bit {probe['packed_points']}; "
                                   f"faceless image -> None: {probe['faceless']}", probe["faceless"])]
    print(f"bench/install.py on {result['cpu']}")
    for name, value, ok in rows:
        print(f"{name:<40} {value:<60} {'ok' if ok else 'MISSED'}")
    print("largest packages: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in result["largest_packages_mb"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
