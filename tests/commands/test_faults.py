"""Commands keep the user's earlier work when something goes wrong: a bad flag, a bad card, a full disk."""

import errno
import json

import pytest

from dunet.cli import main
from dunet.engine.trainer import train
from tests.engine.test_trainer import fast_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    train(fast_config(**{"optim.epochs": 1}), run, log=lambda *_: None)
    return run


@pytest.mark.parametrize("card, problem", [
    ("{not json", "not valid JSON (line 1"), ("[1, 2]", "expected a JSON object ({...}), got a list"),
    (None, "file not found"),
])
def test_export_card_problems_are_one_line(tiny_run, tmp_path, capsys, card, problem):
    path = tmp_path / "card.json"
    if card is not None:
        path.write_text(card)
    code = main(["export", str(tiny_run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors"),
                 "--card", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and f"--card {path}: {problem}" in err and "Traceback" not in err


def test_export_on_a_full_disk_keeps_the_earlier_file(tiny_run, tmp_path, capsys, monkeypatch):
    from dunet.deploy import onnx_export

    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--exporter", "torchscript", "--out", str(out)]) == 0
    good = out.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_export, "_write_metadata", disk_full)  # after the graph was written
    code = main(["export", str(tiny_run), "--format", "onnx", "--exporter", "torchscript", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}: not written (No space left on device); a file already there is unchanged" in err
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_demo_checks_its_config_before_replacing_the_last_report(tmp_path, capsys):
    from dunet.commands.demo import MARKER

    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "metrics.json").write_text(json.dumps({"trained": 1}))
    assert main(["demo", "--out", str(out), "--set", "optim.epochs=abc"]) == 2
    assert "optim.epochs" in capsys.readouterr().err and (out / "metrics.json").exists()
