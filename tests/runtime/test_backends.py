"""The backend registry: the fastest installed runs by default, and a backend or command whose package the runtime
install leaves out is one line naming the extra to install."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dunet import DunetError
from dunet.runtime import backends

REPO = Path(__file__).resolve().parents[2]
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None  # as in `pip install dunet`: importing torch fails\n"


def test_the_fastest_installed_backend_runs_by_default(monkeypatch):
    assert backends.fastest() == "openvino"  # every install has it
    assert backends.fastest("cuda") == "torch"  # a GPU runs PyTorch
    monkeypatch.setattr(backends, "installed", lambda name: name == "onnx")
    assert backends.fastest() == "onnx"
    with pytest.raises(DunetError, match="backend 'tensorrt': choose one of auto, openvino, onnx, torch"):
        backends.check_choice("tensorrt")


def run_without_torch(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code], capture_output=True, text=True, cwd=REPO)


def test_asking_for_torch_without_it_is_one_line_naming_the_extra(tmp_path):
    out = run_without_torch("import dunet\n"
                            "try:\n    dunet.load('face', backend='torch')\n"
                            "except dunet.DunetError as err:\n    print(err)\n", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "the torch backend needs the torch package: pip install 'dunet[train]'"


def test_a_training_command_without_torch_is_one_line_naming_the_extra(tmp_path):
    out = run_without_torch("from dunet.cli import main\n"
                            f"sys.exit(main(['train', 'configs/demo.yaml', '--out', {str(tmp_path / 'run')!r}]))\n",
                            tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == "dunet train: error: this needs PyTorch, which `pip install dunet` leaves out: " \
                                 "pip install 'dunet[train]'"


def test_predict_without_torch_runs(tmp_path):
    from PIL import Image

    from dunet.data.synthetic import render_face

    Image.fromarray(render_face(3, 0, size=160)).save(tmp_path / "face.png")
    out = run_without_torch("from dunet.cli import main\n"
                            f"sys.exit(main(['predict', '--model', '300w-dunet4-bw-alpha', {str(tmp_path / 'face.png')!r},"
                            f" '--box', '20,20,120,120', '--out', {str(tmp_path / 'out')!r}]))\n", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_compiled_networks_are_kept_in_the_cache_folder(tmp_path):
    code = ("import os, dunet\n"
            "dunet.load('face', threads=1)\n"
            "print(len(os.listdir(os.path.join(os.environ['DUNET_CACHE'], 'openvino'))))\n")
    env = {**os.environ, "DUNET_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert first.returncode == 0 and again.returncode == 0, first.stderr[-2000:] + again.stderr[-2000:]
    assert int(first.stdout) >= 1 and int(again.stdout) == int(first.stdout)  # compiled once, then reused


def test_onnxruntime_on_a_model_file_without_torch_says_what_to_do(tmp_path):
    out = run_without_torch("import dunet\n"
                            "try:\n    dunet.load('300w-dunet4', backend='onnx')\n"
                            "except dunet.DunetError as err:\n    print(err)\n", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "onnxruntime runs ONNX files" in out.stdout and "pip install 'dunet[train]'" in out.stdout


def test_a_video_without_opencv_is_one_line_naming_the_extra(tmp_path):
    """Photos need no OpenCV (the test above's predict does not either); a video names the `video` extra."""
    (tmp_path / "clip.mp4").write_bytes(b"not read")
    code = ("import sys; sys.modules['cv2'] = None\n"  # as in `pip install dunet`: importing OpenCV fails
            "from dunet.cli import main\n"
            f"sys.exit(main(['predict', '--model', 'face', {str(tmp_path / 'clip.mp4')!r}, "
            f"'--out', {str(tmp_path / 'out')!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().endswith("this needs OpenCV (cv2), which `pip install dunet` leaves out: pip install 'dunet[video]'")
