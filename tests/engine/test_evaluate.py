"""Evaluation scores every sample once: a bad image is an error naming it, or with --skip-bad it is left
out and counted, never replaced by another sample."""

import json

import pytest

from dunet.cli import main
from dunet.engine.trainer import train
from tests.data.helpers import face_points, write_face
from tests.engine.test_trainer import fast_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    train(fast_config(**{"optim.epochs": 1}), run, log=lambda *_: None)
    return run


def _eval(run, data, capsys, *flags):
    code = main(["eval", str(run), "--data", data, "--json", "--precision", "fp32", "--backend", "torch", *flags])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_a_bad_image_is_never_scored_as_another_sample(tiny_run, tmp_path, capsys):
    good, mixed = tmp_path / "good", tmp_path / "mixed"
    for folder in (good, mixed):
        for i in range(4):
            points = face_points() + i  # four different faces
            write_face(folder, f"face{i}", points=points, seed=i)
    cut, _ = write_face(mixed, "face9", seed=9)
    cut.write_bytes(cut.read_bytes()[:2000])  # the header is intact: found when decoded

    code, alone, _ = _eval(tiny_run, f"300w:{good}", capsys)
    assert code == 0 and alone["n"] == 4
    code, _, err = _eval(tiny_run, f"300w:{mixed}", capsys)
    assert code == 2 and "face9.jpg: truncated image file" in err and "--skip-bad" in err
    code, skipped, _ = _eval(tiny_run, f"300w:{mixed}", capsys, "--skip-bad")
    assert code == 0 and skipped["n"] == 4 and skipped["bad_left_out"] == 1
    assert skipped["nme_io"] == alone["nme_io"]
