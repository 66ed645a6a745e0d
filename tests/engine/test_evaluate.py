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


def test_the_ced_is_on_the_headline_normaliser(tmp_path):
    """A 68-point set of one's own scored by its box gets a box-normalised CED, not an inter-ocular one."""
    import numpy as np

    from dunet.data.sample import Sample, Source
    from dunet.data.spec import SPECS, spec_from_names
    from dunet.engine.evaluate import errors_per_sample, score

    gt = face_points().astype(np.float32)
    sample = Sample("face.jpg", gt, np.ones(68), center=gt.mean(axis=0), scale=200.0)
    pred = gt[None] + (3.0, 4.0)  # 5 px off everywhere
    inter_ocular = float(np.linalg.norm(gt[36] - gt[45]))
    faces = Source("300w:faces", SPECS["300w"], [sample])
    assert errors_per_sample(faces, pred, [0]) == pytest.approx([5 / inter_ocular])
    own = Source("coco:faces", spec_from_names("faces", [f"p{i}" for i in range(68)]), [sample])
    assert errors_per_sample(own, pred, [0]) == pytest.approx([5 / 200])
    assert "pck_0.2" in score(own, pred, [0]) and "nme_io" not in score(own, pred, [0])
