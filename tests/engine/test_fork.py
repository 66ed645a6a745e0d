"""A program that used dunet's models in its own process can still fork: the sequence the test suite once
crashed on, run in a child so that a crash fails this test (naming the signal) instead of the suite."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import how_it_ended

SCRIPT = Path(__file__).with_name("fork_after_inference.py")


@pytest.mark.slow
@pytest.mark.kernels
def test_forks_after_training_exporting_and_inference_in_one_process(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(SCRIPT), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("survived"), how_it_ended(proc)


def test_a_crashed_child_is_named_by_its_signal():
    proc = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
                          capture_output=True, text=True)
    assert how_it_ended(proc).startswith("killed by SIGSEGV")
