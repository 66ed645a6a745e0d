"""`dunet export CHECKPOINT --format {safetensors,packed,onnx,openvino} --out FILE`"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dunet.commands import add_decode_blur_flag, check_out

# The flags that only some formats take: given with another format they would be ignored without a word.
FORMAT_FLAGS = {"--int8": ("onnx", "openvino"), "--fixed-batch": ("onnx", "openvino"), "--half": ("safetensors",),
                "--int8-weights": ("safetensors",)}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model: one-file safetensors, packed (1-2 bit) or ONNX")
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory, or a .safetensors / packed model")
    p.add_argument("--model", help="name of a pretrained model (see `dunet models`)")
    p.add_argument("--format", required=True, choices=["safetensors", "packed", "onnx", "openvino"],
                   help="safetensors: one file with config; packed: quantized weights at 1 bit (BW) or 2 bits "
                        "(TW); onnx: for onnxruntime and other runtimes; openvino: an OpenVINO IR (FILE.xml and "
                        "FILE.bin), the fastest CPU path")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--fixed-batch", action="store_true", help="onnx / openvino: batch fixed to 1 instead of dynamic")
    p.add_argument("--int8", metavar="FORMAT:PATH|dynamic",
                   help="onnx / openvino: also write FILE-int8.onnx / FILE-int8.xml; FORMAT:PATH = static int8 "
                        "calibrated on up to 32 samples of this data; 'dynamic' (onnx only) = activation scales "
                        "computed per batch at run time (no data)")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="onnx / openvino: torch.export-based exporter (default) or the TorchScript one (several "
                        "times faster to export)")
    p.add_argument("--card", help="a JSON object of notes (data, recipe, validation, ...) for the model card's "
                                  "provenance")
    p.add_argument("--half", action="store_true", help="safetensors: store weights as float16 (half the size)")
    p.add_argument("--int8-weights", action="store_true",
                   help="safetensors: conv weights as int8 with a scale per output channel (a quarter of float32)")
    add_decode_blur_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from dunet import DunetError
    from dunet.checkpoint import training_metadata
    from dunet.engine.inference import load_torch_model

    check_out(Path(args.out), folder=False)  # before the slow part: a typo fails at once
    check_packages(args)
    for flag, formats in FORMAT_FLAGS.items():
        if getattr(args, flag[2:].replace("-", "_")) and args.format not in formats:
            raise DunetError(f"{flag} is for --format {' or '.join(formats)}, not {args.format}")
    notes = read_card(args.card) if args.card else {}
    if (args.checkpoint is None) == (args.model is None):
        raise DunetError("give either a CHECKPOINT path or --model NAME")
    if args.model is not None:
        from dunet.runtime.pretrained import resolve_pretrained

        args.checkpoint = str(resolve_pretrained(args.model))
    runner = load_torch_model(args.checkpoint)
    runner.set_decode_blur(args.decode_blur)
    from dunet.card import detector_for

    detector = detector_for(notes.get("task")) or runner.card.detector  # a shipped face model finds its faces
    runner.card = card = dataclasses.replace(runner.card, provenance={**runner.provenance, **notes},
                                             detector=detector)
    model = runner.model.float().to(memory_format=torch.contiguous_format)
    out = Path(args.out)
    if args.format == "safetensors":
        from dunet.checkpoint import save_checkpoint

        if out.suffix != ".safetensors":
            raise DunetError(f"{out}: the file name must end in .safetensors")
        save_checkpoint(out, model.half() if args.half else model, card, config=runner.training,
                        int8_weights=args.int8_weights)  # written to a temporary file and renamed
    elif args.format == "packed":
        from dunet.quant.packing import save_packed

        if card.network.quant == "none":
            raise DunetError(f"{args.checkpoint}: a full-precision model has nothing to pack; "
                             "train with model.quant (e.g. bw-alpha) or use --format safetensors")
        with staged([out]) as (tmp,):
            save_packed(model, {**card.stamped().to_metadata(), **training_metadata(runner.training)}, tmp)
    else:
        export_network(runner, model, out, args)
    size = out.stat().st_size + (out.with_suffix(".bin").stat().st_size if args.format == "openvino" else 0)
    print(f"wrote {out}{' and its .bin' if args.format == 'openvino' else ''} ({size / 2**20:.2f} MiB)")
    return 0


def check_packages(args: argparse.Namespace) -> None:
    """One line naming the extra to install, before any work, for a format whose packages are missing."""
    import importlib.util

    from dunet import DunetError
    from dunet.runtime.backends import EXTRA_OF

    if args.format not in ("onnx", "openvino"):
        return
    packages = ["onnx"]  # an OpenVINO file is converted from the ONNX graph
    if args.exporter == "dynamo":
        packages.append("onnxscript")
    if args.format == "openvino":
        packages += ["nncf"] if args.int8 else []
    elif args.int8:
        packages.append("onnxruntime")  # its int8 quantizer
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        extras = ",".join(sorted({EXTRA_OF[name] for name in missing}))
        raise DunetError(f"--format {args.format} needs {', '.join(missing)}: pip install 'dunet[{extras}]'")


def export_network(runner, model, out: Path, args: argparse.Namespace) -> None:
    """--format onnx or openvino: the float graph at OUT, and with --int8 its int8 version beside it."""
    import tempfile

    from dunet import DunetError
    from dunet.deploy.onnx_export import export_onnx
    from dunet.engine.exported import export_metadata

    openvino = args.format == "openvino"
    suffix = ".xml" if openvino else ".onnx"
    if out.suffix != suffix:
        raise DunetError(f"{out}: the file name must end in {suffix} for --format {args.format}")
    if openvino and args.int8 == "dynamic":
        raise DunetError("--int8 dynamic is an onnxruntime path; for --format openvino give calibration data "
                         "(--int8 FORMAT:PATH)")
    opts = dict(dynamic_batch=not args.fixed_batch, metadata=export_metadata(runner), exporter=args.exporter)
    with tempfile.TemporaryDirectory() as tmp:
        with staged(_files_of(out)) as written:
            onnx_path = Path(tmp) / "model.onnx" if openvino else written[0]
            export_onnx(model, onnx_path, runner.input_size, **opts)
            if openvino:
                from dunet.deploy.openvino import save_openvino

                save_openvino(onnx_path, written[0])
        if not args.int8:
            return
        calibration, mode = None, "dynamic"
        if args.int8 != "dynamic":
            calibration, mode = calibration_batches(args.int8, runner.input_size), "static"
        # int8 quantizes activations itself: export without the models' own k-bit input quantizers.
        float_path = Path(tmp) / "float-for-int8.onnx"
        export_onnx(model, float_path, runner.input_size, keep_input_quantizers=False, **opts)
        int8_path = out.with_name(out.stem + "-int8" + suffix)
        with staged(_files_of(int8_path)) as written:
            if openvino:
                from dunet.deploy.openvino import quantize_openvino_int8

                quantize_openvino_int8(float_path, written[0], calibration)
            else:
                from dunet.deploy.int8 import quantize_onnx_int8

                quantize_onnx_int8(float_path, written[0], calibration, mode=mode)
        print(f"wrote {int8_path}")
    if calibration is not None:
        check_int8(runner, model, int8_path, calibration, args.format)


# Static int8 has one activation scale per tensor, and onnxruntime's also requantizes every conv output to one
# (docs/deployment.md). Most models lose a fraction of a pixel; some lose everything: a 1-bit model with float
# inputs moved its landmarks by 15 px. So every static export is checked before anyone deploys it.
INT8_SHIFT_WARN_PX = 1.0


def check_int8(runner, model, int8_path: Path, calibration: list, backend: str) -> None:
    """Compare the static int8 file's landmarks with the float model's on the calibration crops; warn if they moved."""
    import numpy as np
    import torch

    from dunet.engine.inference import TorchNetwork
    from dunet.runtime.model import LandmarkModel, load_model

    reference = LandmarkModel(TorchNetwork(model, precision="fp32"), runner.card)
    int8 = load_model(int8_path, backend=backend, precision="fp32")
    shift = reference.landmark_shift(int8, torch.from_numpy(np.concatenate(calibration)))
    print(f"int8 check: on the {len(calibration)} calibration crops the landmarks moved {shift.mean():.2f} px on "
          f"average ({np.median(shift):.2f} median) from the float model's, at {runner.input_size} px input")
    if shift.mean() > INT8_SHIFT_WARN_PX:
        other = "--format openvino --int8 DATA" if backend == "onnx" else "--format onnx --int8 dynamic"
        print(f"warning: {int8_path} is far from the float model (more than {INT8_SHIFT_WARN_PX:g} px on average); "
              f"check it with dunet eval before deploying it, or try {other}", file=sys.stderr)


def _files_of(path: Path) -> list[Path]:
    """The files an export to `path` writes: an OpenVINO IR is its .xml and the .bin beside it."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


@contextmanager
def staged(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary siblings of `paths` to write; renamed over `paths` only once all are written, so a failed
    export (a full disk, say) leaves the files that were there as they were, and no temporary file."""
    from dunet import DunetError

    temps = [path.with_name(f".{path.stem}.partial{path.suffix}") for path in paths]
    try:
        yield temps
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    except (OSError, DunetError) as err:
        reason = err.strerror or str(err) if isinstance(err, OSError) else str(err)
        raise DunetError(f"{paths[0]}: not written ({reason}); a file already there is unchanged") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def read_card(path: str) -> dict:
    """--card: a JSON object of notes for the model card's provenance."""
    from dunet import DunetError

    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DunetError(f"--card {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DunetError(f"--card {path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise DunetError(f"--card {path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(card, dict):
        raise DunetError(f"--card {path}: expected a JSON object ({{...}}), got a {type(card).__name__}")
    return card


def calibration_batches(data, input_size: int, count: int = 32, indices: list[int] | None = None) -> list:
    """Up to `count` un-augmented crops of a data set (FORMAT:PATH or an opened source), (1, 3, S, S) each, for
    int8 calibration: spread evenly over its samples, or over `indices` (e.g. a training split's)."""
    from dunet.data.dataset import LandmarkDataset
    from dunet.data.readers import open_source
    from dunet.engine.trainer import evenly_spaced

    dataset = LandmarkDataset(open_source(data) if isinstance(data, str) else data, input_size=input_size,
                              augment=False)
    chosen = evenly_spaced(list(range(len(dataset))) if indices is None else list(indices), count)
    return [dataset[i]["image"][None].numpy() for i in chosen]
