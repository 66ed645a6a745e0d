"""A program that trains, exports and runs models in its own process, then forks in every way a user's program
does: plain subprocesses, os.fork, a multiprocessing pool, DataLoader workers and torchrun. Prints "survived".

The test suite once did all of this in one process and the fork at its end killed the process (SIGSEGV, no
Python traceback) on an Intel Xeon (Ice Lake) and an AMD EPYC (Zen 3); tests/engine/test_fork.py runs this
script as a child, so a crash fails one test. By hand: python tests/engine/fork_after_inference.py WORKDIR
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import dunet  # noqa: E402
from dunet.cli import main  # noqa: E402
from tests.engine.conftest import TINY  # noqa: E402


def run(cmd: list[str]) -> None:
    assert main(cmd) == 0, cmd


def in_process_work(work: Path) -> None:
    """What the suite's earlier tests leave in its process: a training (glibc malloc settings, oneDNN and OpenMP
    thread pools), ONNX and OpenVINO int8 exports (NNCF), onnxruntime and OpenVINO sessions at 1 thread."""
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run(["train", str(config), "--out", str(work / "run"), "--set", "optim.epochs=1"])
    run(["export", str(work / "run"), "--format", "openvino", "--exporter", "torchscript", "--int8", "synthetic:8:3",
         "--out", str(work / "tiny.xml")])
    run(["export", str(work / "run"), "--format", "onnx", "--out", str(work / "tiny.onnx")])
    for backend in ("openvino", "onnx", "torch"):
        run(["eval", str(work / "run" / "last"), "--data", "synthetic:4:5", "--threads", "1", "--backend", backend])
    image = np.full((120, 100, 3), 128, np.uint8)
    for name in ("face", str(work / "tiny.xml"), str(work / "tiny.onnx")):
        assert dunet.load(name, threads=1).predict(image, box=(10, 10, 80, 90)) is not None, name


def forks(work: Path) -> None:
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]

    from dunet.data.dataset import LandmarkDataset, build_loader
    from dunet.data.readers import open_source

    dataset = LandmarkDataset(open_source("synthetic:8:0"), input_size=64)
    assert sum(len(batch["index"]) for batch in build_loader(dataset, 4, workers=2)) == 8

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           "29519", "-m", "dunet", "train", str(work / "tiny.yaml"), "--out", str(work / "ddp"),
                           "--set", "optim.epochs=1"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    in_process_work(workdir)
    forks(workdir)
    print("survived")
