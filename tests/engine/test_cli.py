"""The CLI contract: train, eval, predict, models."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dunet.cli import main


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory):
    """predict / eval convert models for the fastest backend: into a test folder, never ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUNET_CACHE", str(tmp_path_factory.mktemp("dunet-cache")))
        yield


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.engine.conftest import TINY
    import yaml

    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert main(["train", str(config), "--out", str(run), "--set", "optim.epochs=1"]) == 0
    return run


def test_train_refuses_to_overwrite_a_run(trained_run, capsys):
    config = trained_run.parent / "tiny.yaml"
    assert main(["train", str(config), "--out", str(trained_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_with_a_recipe_that_differs_from_the_run_stops(trained_run, capsys):
    config = trained_run.parent / "tiny.yaml"  # the run was trained with --set optim.epochs=1
    assert main(["train", str(config), "--out", str(trained_run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "optim.epochs" in err and "in the run" in err and "Traceback" not in err
    # The same recipe and overrides as the run: it resumes (here with nothing left to train).
    assert main(["train", str(config), "--out", str(trained_run), "--resume", "--set", "optim.epochs=1"]) == 0


def test_train_bad_key_is_one_line_error(trained_run, capsys):
    assert main(["train", str(trained_run.parent / "tiny.yaml"), "--out", str(trained_run.parent / "x"),
                 "--set", "model.nunits=3"]) == 2
    err = capsys.readouterr().err
    assert "model.nunits" in err and "Traceback" not in err


def test_eval_json(trained_run, capsys):
    assert main(["eval", str(trained_run), "--data", "synthetic:6:5", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 6 and {"nme_io", "nme_ip", "fr_0.08", "auc_0.08"} <= metrics.keys()
    measured = metrics["measured"]  # what the figures were measured with
    assert measured["backend"] in ("torch", "onnx", "openvino") and measured["precision"] in ("fp32", "bf16")
    assert measured["flip"] is False and measured["split"] == "all" and "box_margin" in measured["box"]
    assert measured["threads"] >= 1 and measured["model"] == str(trained_run / "best")  # the checkpoint scored


def test_eval_flip_and_ced(trained_run, tmp_path, capsys):
    ced = tmp_path / "ced.png"
    before = torch.get_num_threads()
    try:
        # PyTorch: a 1-thread OpenVINO eval in this process made the torchrun test's fork segfault it later.
        assert main(["eval", str(trained_run / "last"), "--data", "synthetic:4:5", "--flip", "--ced", str(ced),
                     "--threads", "1", "--backend", "torch"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "nme_io" in out and ced.stat().st_size > 0
    assert "1 thread(s))" in out.splitlines()[0]  # the header says what it ran on


def test_eval_mismatched_data_and_missing_checkpoint(trained_run, tmp_path, capsys, shared_data):
    assert main(["eval", str(trained_run), "--data", f"lsp:{shared_data / 'lsp'}"]) == 2
    assert "68 landmarks" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing"), "--data", "synthetic:4:5"]) == 2
    assert "nothing" in capsys.readouterr().err


def test_predict_writes_json_and_overlays(trained_run, tmp_path, shared_data):
    out = tmp_path / "pred"
    image = shared_data / "300w" / "afw_1051618982_1.jpg"
    assert main(["predict", str(trained_run), str(image), "--box", "10,10,100,120", "--out", str(out)]) == 0
    result = json.loads((out / "predictions.json").read_text())
    inst = result["images"][0]["instances"][0]
    assert len(inst["landmarks"]) == 68 and inst["box"] == [10, 10, 100, 120]
    assert (out / "afw_1051618982_1_landmarks.png").exists()


def test_predict_scores_csv_and_distinct_overlays_for_same_stems(trained_run, tmp_path):
    from PIL import Image

    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (60, 50), (90, 120, 150)).save(tmp_path / folder / "img.png")
    out = tmp_path / "pred"
    inputs = [str(tmp_path / f / "img.png") for f in "abc"]
    assert main(["predict", str(trained_run), *inputs, "--out", str(out), "--backend", "torch"]) == 0
    assert len(list(out.glob("*_landmarks.png"))) == 3  # none overwrote another
    result = json.loads((out / "predictions.json").read_text())
    scores = np.array([result["images"][i]["instances"][0]["scores"] for i in range(3)])
    assert scores.shape == (3, 68) and ((scores >= 0) & (scores <= 1)).all()
    lines = (out / "predictions.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 4 and header[:6] == ["image", "instance", "box_x", "box_y", "box_w", "box_h"]
    assert len(header) == 7 + 3 * 68 and header[9] == result["landmarks"][0] + "_score"


def test_predict_boxes_file_json_and_csv(trained_run, tmp_path, shared_data):
    image = shared_data / "300w" / "afw_1051618982_1.jpg"
    as_json = tmp_path / "boxes.json"
    as_json.write_text(json.dumps({image.name: [[10, 10, 100, 120], [50, 40, 80, 80]]}))
    as_csv = tmp_path / "boxes.csv"
    as_csv.write_text(f"image,x,y,w,h\n{image.name},10,10,100,120\n")
    for boxes, count in ((as_json, 2), (as_csv, 1)):
        out = tmp_path / boxes.suffix[1:]
        assert main(["predict", str(trained_run), str(image), "--boxes", str(boxes), "--out", str(out),
                     "--backend", "torch", "--no-overlays"]) == 0
        instances = json.loads((out / "predictions.json").read_text())["images"][0]["instances"]
        assert [i["box"] for i in instances][:1] == [[10, 10, 100, 120]] and len(instances) == count


def test_predict_bad_arguments_are_one_line_errors(trained_run, tmp_path, shared_data, capsys):
    image = str(shared_data / "300w" / "afw_1051618982_1.jpg")
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    missing_entry = tmp_path / "boxes.json"
    missing_entry.write_text(json.dumps({"other.jpg": [1, 2, 3, 4]}))
    cases = [(["--box", "nan,0,10,10"], "not a finite"), (["--box", "0,0,inf,10"], "not a finite"),
             (["--box", "5000,5000,10,10"], "outside the"), (["--box", "0,0,1e12,1e12"], "10 times"),
             (["--out", str(existing)], "existing file"),
             (["--boxes", str(missing_entry)], "not in the --boxes file")]
    for extra, words in cases:
        args = ["predict", str(trained_run), image, "--backend", "torch", "--no-overlays"]
        if "--out" not in extra:
            args += ["--out", str(tmp_path / "o")]
        assert main(args + extra) == 2, extra
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):  # refused when the flags are parsed, as in eval (dunet/commands/__init__.py)
        main(["predict", str(trained_run), image, "--batch-size", "0"])
    assert "argument --batch-size: 0: must be >= 1" in capsys.readouterr().err


def test_predict_video(trained_run, tmp_path, capsys):
    from tests.test_video import write_video

    video = tmp_path / "clip.avi"
    write_video(video, count=9)
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(video), "--out", str(out), "--every", "2", "--smooth",
                 "--backend", "torch"]) == 0
    lines = (out / "clip.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "2", "4", "6", "8"]
    assert (out / "clip_labelled.mp4").stat().st_size > 0
    assert "5 frame(s)" in capsys.readouterr().out


def test_export_takes_a_pretrained_model_name(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["export", "--model", "300w-dunet4", "--format", "safetensors", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert main(["export", "--format", "safetensors", "--out", str(out)]) == 2
    assert "--model NAME" in capsys.readouterr().err


def test_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "landmarks" in text and "dunet/commands" not in text and "predict" in text


def test_predict_reports_coordinates_in_the_exif_upright_image(trained_run, tmp_path):
    from PIL import Image

    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 120 wide x 80 high, viewed rotated: 80 wide x 120 high
    Image.new("RGB", (120, 80), (90, 120, 150)).save(photo, exif=exif)
    for flags, size in (([], (80, 120)), (["--ignore-exif"], (120, 80))):
        out = tmp_path / f"pred{len(flags)}"
        assert main(["predict", str(trained_run), str(photo), "--out", str(out), "--no-overlays", *flags]) == 0
        entry = json.loads((out / "predictions.json").read_text())["images"][0]
        assert (entry["width"], entry["height"]) == size


def test_predict_unreadable_image(trained_run, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["predict", str(trained_run), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_models_lists(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    from tests.engine.conftest import TINY
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
         "-m", "dunet", "train", str(config), "--out", str(run), "--set", "optim.epochs=1"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 process(es)" in proc.stdout
    assert (run / "last" / "model.safetensors").exists()


def _stopped_by_sigterm(tmp_path, samples: int, signal_workers) -> tuple[int, str]:
    """Start an endless tiny run with one data-loading worker, let `signal_workers(proc, trainer, run, deadline)` signal
    its workers (it returns once done), then SIGTERM the training process once it has saved an epoch: its return
    code and output."""
    import signal
    import time

    import psutil
    import yaml

    from tests.engine.conftest import TINY

    config = tmp_path / "tiny.yaml"
    tiny = {**TINY, "data": {**TINY["data"], "train": f"synthetic:{samples}:0", "workers": 1}}
    config.write_text(yaml.safe_dump({**tiny, "optim": {**TINY["optim"], "epochs": 1000}}))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dunet", "train", str(config), "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        signal_workers(proc, psutil.Process(proc.pid), run, deadline)
        while proc.poll() is None and not (run / "last" / "card.json").exists():
            assert time.monotonic() < deadline, "no epoch completed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out + err


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_exits(tmp_path):
    """A SIGTERM to every process of the run (as `kill -- -PGID` or a service manager sends it) saves `last`:
    the data-loading workers leave it to the training process instead of dying first."""
    import signal
    import time

    def workers_first(proc, trainer, run, deadline):
        while not (run / "last" / "card.json").exists() or not trainer.children():
            assert proc.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.05)
        time.sleep(1.0)  # let the worker start up
        # As a group kill can land: the worker first, the training process a moment later.
        for worker in trainer.children():
            worker.send_signal(signal.SIGTERM)
        time.sleep(1.0)

    code, said = _stopped_by_sigterm(tmp_path, 400, workers_first)
    assert code == 130, said[-2000:]
    assert "interrupted: saved" in said and "killed by signal" not in said and "exited unexpectedly" not in said


@pytest.mark.slow
def test_sigterm_to_workers_as_they_start_still_saves_and_exits(tmp_path):
    """Workers start each epoch; a group SIGTERM can land on one before its init ran. Each new worker gets one the
    moment it appears (before the fix: the run failed, "worker exited unexpectedly", in 4 runs of 4); then the
    training process."""
    import signal
    import time

    import psutil

    def each_new_worker(proc, trainer, run, deadline):
        hit: set[int] = set()
        while len(hit) < 6 and proc.poll() is None:  # a run that fails ends the loop; the caller sees its code
            assert time.monotonic() < deadline, "training did not get going"
            try:
                for worker in trainer.children():
                    if worker.pid not in hit:
                        hit.add(worker.pid)
                        worker.send_signal(signal.SIGTERM)
            except psutil.Error:  # a worker gone meanwhile
                pass

    code, said = _stopped_by_sigterm(tmp_path, 40, each_new_worker)
    assert code == 130, said[-2000:]
    assert "interrupted: saved" in said and "exited unexpectedly" not in said


def _eval_json(target, capsys, data="synthetic:6:5"):
    capsys.readouterr()
    assert main(["eval", str(target), "--data", data, "--json", "--precision", "fp32", "--backend", "torch"]) == 0
    return json.loads(capsys.readouterr().out)


def test_export_safetensors_and_onnx_match(trained_run, tmp_path, capsys):
    reference = _eval_json(trained_run, capsys)
    single = tmp_path / "model.safetensors"
    assert main(["export", str(trained_run), "--format", "safetensors", "--out", str(single)]) == 0
    assert _eval_json(single, capsys)["mean_error_px"] == reference["mean_error_px"]
    half = tmp_path / "half.safetensors"
    assert main(["export", str(trained_run), "--format", "safetensors", "--half", "--out", str(half)]) == 0
    assert half.stat().st_size < 0.6 * single.stat().st_size
    assert abs(_eval_json(half, capsys)["mean_error_px"] - reference["mean_error_px"]) < 0.5
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    capsys.readouterr()
    assert abs(_eval_json(onnx_file, capsys)["mean_error_px"] - reference["mean_error_px"]) < 1e-3


def test_eval_decode_blur_option(trained_run, capsys):
    data = "synthetic:6:7"
    assert main(["eval", str(trained_run), "--data", data, "--json", "--decode-blur", "1.0"]) == 0
    blurred = json.loads(capsys.readouterr().out)
    assert blurred["n"] == 6 and np.isfinite(blurred["mean_error_px"])
    with pytest.raises(SystemExit):  # refused when the flags are parsed
        main(["eval", str(trained_run), "--data", data, "--decode-blur", "-1"])
    assert "argument --decode-blur: -1: must be >= 0.0" in capsys.readouterr().err


def test_export_onnx_with_dynamic_int8(trained_run, tmp_path, capsys):
    reference = _eval_json(trained_run, capsys)
    onnx_file = tmp_path / "model.onnx"
    args = ["export", str(trained_run), "--format", "onnx", "--exporter", "torchscript", "--int8", "dynamic"]
    assert main(args + ["--out", str(onnx_file)]) == 0
    assert "model-int8.onnx" in capsys.readouterr().out
    assert abs(_eval_json(onnx_file, capsys)["mean_error_px"] - reference["mean_error_px"]) < 1e-3
    int8 = _eval_json(tmp_path / "model-int8.onnx", capsys)
    assert int8["n"] == reference["n"] and np.isfinite(int8["mean_error_px"])


def test_static_int8_export_reports_how_far_the_landmarks_moved(trained_run, tmp_path, capsys):
    args = ["export", str(trained_run), "--format", "onnx", "--exporter", "torchscript", "--int8", "synthetic:8:3"]
    assert main(args + ["--out", str(tmp_path / "model.onnx")]) == 0
    assert "int8 check: on the 8 calibration crops the landmarks moved" in capsys.readouterr().out


def test_static_int8_export_warns_when_it_breaks_the_model(shared_data, tmp_path, capsys):
    """The shipped 1-bit face model has float inputs of very uneven range: onnxruntime's static int8, one scale
    per tensor on every conv output, moves its landmarks by pixels (docs/deployment.md)."""
    faces = shared_data / "300w"
    args = ["export", "--model", "300w-dunet4-bw-alpha", "--format", "onnx", "--exporter", "torchscript",
            "--int8", f"300w:{faces}", "--out", str(tmp_path / "bw.onnx")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    moved = float(out.split("the landmarks moved ")[1].split(" px")[0])
    assert moved > 1.0
    assert "bw-int8.onnx is far from the float model" in err and "--format openvino" in err


def test_export_openvino_with_int8_and_eval_both(trained_run, tmp_path, capsys):
    pytest.importorskip("openvino")
    reference = _eval_json(trained_run, capsys)
    xml = tmp_path / "model.xml"
    args = ["export", str(trained_run), "--format", "openvino", "--exporter", "torchscript", "--int8", "synthetic:8:3"]
    assert main(args + ["--out", str(xml)]) == 0
    assert "model-int8.xml" in capsys.readouterr().out
    assert abs(_eval_json(xml, capsys)["mean_error_px"] - reference["mean_error_px"]) < 1e-3  # fp32 by default
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "model-int8.xml"), "--data", "synthetic:6:5", "--json",
                 "--backend", "openvino", "--precision", "bf16"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["n"] == reference["n"] and np.isfinite(int8["mean_error_px"])
    assert main(args[:-2] + ["--int8", "dynamic", "--out", str(xml)]) == 2
    assert "calibration data" in capsys.readouterr().err
    assert main(args[:-2] + ["--out", str(tmp_path / "model.onnx")]) == 2
    assert "must end in .xml" in capsys.readouterr().err
    assert main(["eval", str(xml), "--data", "synthetic:6:5", "--backend", "onnx"]) == 2
    assert "--backend openvino" in capsys.readouterr().err


def test_eval_split_val_scores_the_held_out_data_the_model_was_trained_with(trained_run, capsys):
    # TINY holds out a data set of its own (data.val): --split val is all of it, and other data is refused.
    assert main(["eval", str(trained_run), "--data", "synthetic:6:5", "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "trained with the held-out data synthetic:8:1" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", str(trained_run)]) == 2  # no --data, no split to take it from
    assert "--data FORMAT:PATH" in capsys.readouterr().err


def test_the_figure_train_prints_is_the_one_eval_gives(tmp_path, capsys):
    """One model, one figure: `dunet train` ends by scoring the checkpoint the run resolves to as
    `dunet eval RUN --split val` does with its default flags (backend, precision, threads, no flip)."""
    import yaml

    from tests.engine.conftest import TINY

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--set", "optim.epochs=2"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("held-out figures of the trained model"):].splitlines()
    printed = {line.split()[0]: line.split()[1] for line in summary[3:] if len(line.split()) >= 2}
    assert main(["eval", str(run), "--split", "val", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    measured = shown["measured"]
    assert measured["model"] in (str(run / "best"), str(run / "last"))  # the checkpoint a run resolves to
    assert summary[1].startswith(f"scored {measured['model']} (") and measured["split"] == "val"
    assert f"{measured['backend']} backend, {measured['precision']}" in summary[1]
    assert f"{measured['samples']} samples, val split, no flip test" in summary[2] and measured["samples"] == 8
    # The goal: equal to 0.1 points (two runs of eval may get other thread counts, as other work comes and goes).
    assert float(printed["nme_io"]) == pytest.approx(shown["nme_io"], abs=0.1)
    assert float(printed["mean_error_px"]) == pytest.approx(shown["mean_error_px"], rel=0.01)


def test_export_packed_needs_a_quantized_model(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--format", "packed", "--out", str(tmp_path / "m.packed")]) == 2
    assert "full-precision" in capsys.readouterr().err


def test_shipped_pretrained_models_predict_offline(tmp_path, shared_data, capsys):
    from dunet.runtime.pretrained import PRETRAINED_DIR, list_pretrained

    models = list_pretrained()
    assert models, "dunet ships pretrained models"
    for entry in models:  # "a few MB at most each"
        assert (PRETRAINED_DIR / entry["file"]).stat().st_size <= 5 * 2**20, entry["file"]
    images = {"face": shared_data / "300w" / "afw_1051618982_1.jpg", "pose": shared_data / "lsp" / "images" / "im0001.jpg"}
    for entry in models:
        out = tmp_path / entry["name"]
        assert main(["predict", "--model", entry["name"], str(images[entry["task"]]), "--out", str(out),
                     "--backend", "torch"]) == 0
        result = json.loads((out / "predictions.json").read_text())
        assert len(result["images"][0]["instances"][0]["landmarks"]) == len(result["landmarks"])
    assert main(["models"]) == 0
    assert models[0]["name"] in capsys.readouterr().out


def test_predict_with_a_face_model_finds_the_faces_unless_told_not_to(tmp_path, shared_data):
    from PIL import Image

    photo = shared_data / "300w" / "afw_1051618982_1.jpg"
    width = Image.open(photo).width
    boxes = {}
    for flags in ([], ["--no-detect-faces"]):
        out = tmp_path / str(len(flags))
        assert main(["predict", "--model", "face", str(photo), "--out", str(out), "--backend", "torch",
                     "--no-overlays", *flags]) == 0
        boxes[len(flags)] = json.loads((out / "predictions.json").read_text())["images"][0]["instances"][0]["box"]
    assert boxes[0][2] < width / 2  # the detected face
    assert boxes[1] == [0, 0, width, Image.open(photo).height]  # the whole image


def test_an_onnx_file_whose_metadata_does_not_match_its_graph_is_one_line(trained_run, tmp_path, capsys):
    import onnx
    from PIL import Image

    good = tmp_path / "good.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(good)]) == 0
    model = onnx.load(str(good))
    entry = next(p for p in model.metadata_props if p.key == "dunet.dunet_card")
    card = json.loads(entry.value)
    card["landmarks"] = {"name": "custom", "keypoints": card["landmarks"]["keypoints"][:5]}  # 5; the graph gives 68
    card["network"]["landmarks"] = 5
    entry.value = json.dumps(card)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    image = tmp_path / "images" / "face.png"
    image.parent.mkdir()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(image)
    capsys.readouterr()
    assert main(["predict", str(bad), str(image), "--out", str(tmp_path / "p")]) == 2
    assert "the network gives heatmaps of shape (1, 68, 16, 16), but its model card describes (1, 5, 16, 16)" \
        in capsys.readouterr().err
    card["network"]["landmarks"] = 68
    entry.value = json.dumps(card)
    onnx.save(model, str(bad))
    assert main(["eval", str(bad), "--data", "synthetic:4:5"]) == 2
    assert "bad.onnx: the model card disagrees with itself: 5 keypoint names but 68 heatmaps" \
        in capsys.readouterr().err


def test_predict_on_a_folder_without_model_points_at_the_model_flag(tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (60, 50)).save(photos / "a.jpg")
    for args in ([str(photos)], [str(photos / "a.jpg")], [str(photos), str(photos / "a.jpg")]):
        assert main(["predict", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "not a model: add --model NAME" in err and "Traceback" not in err, args


@pytest.mark.parametrize("fmt, hidden, extras", [("onnx", "onnxscript", "train"), ("onnx", "onnx", "train"),
                                                 ("openvino", "onnx", "train")])
def test_export_without_its_extra_is_one_line_naming_it_before_any_work(tmp_path, capsys, monkeypatch, fmt, hidden,
                                                                       extras):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == hidden else find_spec(name, *a))
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.xml")
    assert main(["export", "--model", "300w-dunet2-w80", "--format", fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"needs {hidden}: pip install 'dunet[{extras}]'" in err and not out.exists()
