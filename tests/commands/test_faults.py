"""Commands keep the user's earlier work when something goes wrong: a bad flag, a bad card, a full disk."""

import errno
import json
from pathlib import Path

import pytest

from dunet.cli import main
from dunet.engine.trainer import train
from tests.engine.test_trainer import fast_config
from tests.full_disk import full_disk


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

    real_write_metadata = onnx_export._write_metadata
    monkeypatch.setattr(onnx_export, "_write_metadata", disk_full)  # after the graph was written
    code = main(["export", str(tiny_run), "--format", "onnx", "--exporter", "torchscript", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}: not written (No space left on device); a file already there is unchanged" in err
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]

    from dunet import files  # now the disk fills while the metadata's file is written: no temporary file stays
    monkeypatch.setattr(onnx_export, "_write_metadata", real_write_metadata)
    monkeypatch.setattr(files, "write_synced", disk_full)
    code = main(["export", str(tiny_run), "--format", "onnx", "--exporter", "torchscript", "--out", str(out)])
    assert code == 2 and "No space left on device" in capsys.readouterr().err
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_openvino_export_on_a_full_disk_keeps_the_earlier_files(tiny_run, tmp_path, capsys, monkeypatch):
    """OpenVINO's writer fails past Python (tests/full_disk.py cannot fill its disk): a RuntimeError traceback."""
    ov = pytest.importorskip("openvino")
    out = tmp_path / "m.xml"
    args = ["export", str(tiny_run), "--format", "openvino", "--exporter", "torchscript", "--out", str(out)]
    assert main(args) == 0
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(model, path, **kwargs):
        open(path, "wb").close()  # a start, as a writer that runs out of room leaves one
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1214:\nFailed to write the file\n")

    monkeypatch.setattr(ov, "save_model", disk_full)
    assert main(args) == 2
    err = capsys.readouterr().err
    partial = tmp_path / ".m.partial.xml"
    assert f"{out}: not written ({partial}: cannot write the OpenVINO model (Failed to write the file))" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good


def test_resume_on_a_full_disk_is_one_line_and_leaves_the_run_as_it_was(tiny_run, tmp_path, capsys):
    """An OSError traceback, and .config.yaml.tmp left in the run."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for room in (0, len(before[Path("config.yaml")]) + 50):  # nothing fits; the config fits, the checkpoint not
        with full_disk(run, room):
            code = main(["train", "--resume", "--out", str(run), "--set", "optim.epochs=2"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.count("\n") == 1 and "No space left on device" in err
        after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
        assert sorted(after) == sorted(before)  # no temporary file left
        assert {k: v for k, v in after.items() if k.parts[0] == "last"} == \
            {k: v for k, v in before.items() if k.parts[0] == "last"}


def test_demo_checks_its_config_before_replacing_the_last_report(tmp_path, capsys):
    from dunet.commands.demo import MARKER

    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "metrics.json").write_text(json.dumps({"trained": 1}))
    assert main(["demo", "--out", str(out), "--set", "optim.epochs=abc"]) == 2
    assert "optim.epochs" in capsys.readouterr().err and (out / "metrics.json").exists()


TINY_DEMO = ["--set", "data.train=synthetic:16:0", "--set", "data.val=synthetic:4:1", "--set", "optim.epochs=1",
             "--set", "model.units=1", "--set", "model.channels=16", "--set", "model.bottleneck=16",
             "--set", "model.growth=8", "--set", "threads=1", "--set", "data.workers=0"]


def test_demo_keeps_the_earlier_report_until_the_new_one_is_done(tmp_path, capsys, monkeypatch):
    """A bad data source, a wrong landmark count or a SIGTERM in training left only .dunet-demo of the report."""
    from dunet.commands.demo import MARKER
    from dunet.engine import trainer

    out = tmp_path / "demo"
    out.mkdir()
    earlier = {MARKER: b"", "metrics.json": b'{"trained": 1}'}
    for name, data in earlier.items():
        (out / name).write_bytes(data)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what SIGTERM is during training

    for extra, code in ((["--set", "data.val=300w:nope"], 2), (["--set", "model.landmarks=14"], 2), ([], 130)):
        if code == 130:
            monkeypatch.setattr(trainer, "train", interrupted)
        assert main(["demo", "--out", str(out), *TINY_DEMO, *extra]) == code, extra
        if extra == ["--set", "model.landmarks=14"]:
            assert "'model.landmarks' is 14 but synthetic:4:1 has 68 keypoints" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier
        assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no half-made report beside it
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["demo", "--out", str(out), *TINY_DEMO]) in (0, 1)  # 1: one epoch may not beat the untrained net
    assert json.loads((out / "metrics.json").read_text())["trained"]["n"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and (out / "run" / "best").is_dir()


def test_predict_on_a_full_disk_keeps_the_earlier_files_and_says_what_was_written(tiny_run, tmp_path, capsys):
    from PIL import Image

    images = []
    for name in "abc":
        images.append(tmp_path / f"{name}.png")
        Image.new("RGB", (60, 50), (90, 120, 150)).save(images[-1])
    out = tmp_path / "out"
    args = ["predict", str(tiny_run), *map(str, images), "--out", str(out), "--backend", "torch"]
    assert main(args) == 0
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    assert sorted(sizes) == ["a_landmarks.png", "b_landmarks.png", "c_landmarks.png", "predictions.csv",
                             "predictions.json"]
    earlier = {name: b"from an earlier run" for name in sizes}
    for name, data in earlier.items():
        (out / name).write_bytes(data)

    # Room for the tables and the first overlay, and half of the second.
    room = sizes["predictions.json"] + sizes["predictions.csv"] + sizes["a_landmarks.png"]
    with full_disk(out, room + sizes["b_landmarks.png"] // 2):
        code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (f"{out / 'b_landmarks.png'}: cannot write this output (No space left on device); predictions.json, predictions.csv "
            f"and 1 of 3 overlays written to {out}") in err
    now = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(now) == sorted(earlier)  # no temporary file left behind
    assert [name for name in sorted(now) if now[name] == earlier[name]] == ["b_landmarks.png", "c_landmarks.png"]
    for name in ("predictions.json", "predictions.csv"):
        assert len(now[name]) == sizes[name]  # the new tables, whole

    with full_disk(out, 10):
        code = main(args)
    assert code == 2 and f"cannot write this output (No space left on device); nothing written to {out}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["predict", "x.png", "--every", "0"], "argument --every: 0: must be >= 1"),
    (["predict", "x.png", "--start", "nan"], "argument --start: nan: must be a finite number"),
    (["predict", "x.png", "--end", "-5"], "argument --end: -5: must be >= 0.0"),
    (["eval", "run", "--data", "synthetic:4", "--decode-blur", "inf"], "argument --decode-blur: inf: must be a finite"),
    (["export", "run", "--format", "onnx", "--out", "m.onnx", "--decode-blur", "-1"],
     "argument --decode-blur: -1: must be >= 0.0"),
])
def test_flag_values_are_range_checked_when_parsed(argv, message, capsys):
    """Video flags were ignored for images (exit 0 whatever their value); an infinite blur was a traceback."""
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_out_paths_that_cannot_be_written_are_one_line(tiny_run, tmp_path, capsys):
    from PIL import Image

    a_file = tmp_path / "a_file.txt"
    a_file.write_text("keep me")
    image = tmp_path / "face.png"
    Image.new("RGB", (60, 50)).save(image)
    cases = [
        (["train", "recipe.yaml", "--out", str(a_file)], f"--out {a_file}: is an existing file; give a folder"),
        (["train", "recipe.yaml", "--out", str(a_file / "run")], f"{a_file} is a file, not a folder"),
        (["predict", str(tiny_run), str(image), "--out", str(a_file / "p")], f"{a_file} is a file, not a folder"),
        (["export", str(tiny_run), "--format", "safetensors", "--out", str(a_file / "m.safetensors")],
         f"{a_file} is a file, not a folder"),
        (["export", str(tiny_run), "--format", "safetensors", "--out", str(tmp_path)],
         f"--out {tmp_path}: is an existing folder; give a file name"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("flags, message", [
    (["--format", "safetensors", "--int8", "dynamic"], "--int8 is for --format onnx or openvino, not safetensors"),
    (["--format", "safetensors", "--fixed-batch"], "--fixed-batch is for --format onnx or openvino"),
    (["--format", "onnx", "--half"], "--half is for --format safetensors, not onnx"),
    (["--format", "onnx", "--int8-weights"], "--int8-weights is for --format safetensors, not onnx"),
])
def test_export_refuses_flags_its_format_would_ignore(tiny_run, tmp_path, capsys, flags, message):
    suffix = ".onnx" if "onnx" in flags else ".safetensors"
    assert main(["export", str(tiny_run), "--out", str(tmp_path / f"m{suffix}"), *flags]) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("boxes, message", [
    ('{"face.png": 7}', "face.png: expected [x, y, w, h] or a list of them, got 7"),
    ('{"face.png": {"x": 1}}', "face.png: expected [x, y, w, h] or a list of them, got {'x': 1}"),
    ('{"face.png": [[1, 2, 3, 4], 5]}', "expected x,y,w,h (four numbers)"),
    (None, "--box '': expected x,y,w,h (four numbers)"),
])
def test_predict_box_values_of_the_wrong_type_are_one_line(tiny_run, tmp_path, capsys, boxes, message):
    from PIL import Image

    Image.new("RGB", (60, 50)).save(tmp_path / "face.png")
    args = ["predict", str(tiny_run), str(tmp_path / "face.png"), "--out", str(tmp_path / "out")]
    if boxes is None:
        args.append("--box=")
    else:
        (tmp_path / "boxes.json").write_text(boxes)
        args += ["--boxes", str(tmp_path / "boxes.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_predict_with_threads_above_the_cores_uses_the_cores_and_says_so_in_one_line(tiny_run, tmp_path, capsys,
                                                                                      monkeypatch):
    import sys
    import warnings

    import torch
    from PIL import Image

    from dunet.runtime import cpu

    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    # Shown as outside pytest (which records warnings instead): formatted, on stderr.
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, filename, lineno, file=None, line=None:
                        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    Image.new("RGB", (60, 50)).save(tmp_path / "face.png")
    before = torch.get_num_threads()
    try:
        assert main(["predict", str(tiny_run), str(tmp_path / "face.png"), "--out", str(tmp_path / "out"),
                     "--backend", "torch", "--threads", "1000"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert err == "dunet predict: warning: threads 1000 is more than the 2 usable core(s): using 2\n"


def test_predict_never_writes_over_one_of_its_inputs(tiny_run, tmp_path, capsys):
    """--out IMAGES over a folder holding a_landmarks.png beside a.jpg overwrote the user's file (exit 0)."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (60, 50), (90, 120, 150)).save(images / "a.jpg")
    Image.new("RGB", (60, 50), (10, 20, 30)).save(images / "a_landmarks.png")
    mine = (images / "a_landmarks.png").read_bytes()
    args = ["predict", str(tiny_run), str(images), "--out", str(images), "--backend", "torch"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"the overlay of a.jpg would replace {images / 'a_landmarks.png'}, one of the inputs; choose another --out" \
        in err and len(err.strip().splitlines()) == 1
    assert (images / "a_landmarks.png").read_bytes() == mine and len(list(images.iterdir())) == 2
    assert main(args + ["--no-overlays"]) == 0  # then nothing would replace an input
    assert (images / "a_landmarks.png").read_bytes() == mine


def test_outputs_replace_a_link_in_out_and_leave_the_file_it_points_to(tiny_run, tmp_path):
    from PIL import Image

    Image.new("RGB", (60, 50)).save(tmp_path / "face.png")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("predictions.json", "predictions.csv", "face_landmarks.png"):
        (out / name).symlink_to(elsewhere)
    assert main(["predict", str(tiny_run), str(tmp_path / "face.png"), "--out", str(out), "--backend", "torch"]) == 0
    assert elsewhere.read_text() == "keep me" and not any(p.is_symlink() for p in out.iterdir())
