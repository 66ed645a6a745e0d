"""The subcommands of `dunet`, one module each; the flags that choose and run a model are defined once here,
so they mean the same in every command."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_flags(p: argparse.ArgumentParser, batch_size: int) -> None:
    """--model, --flip, --batch-size, --precision, --device, --backend and --threads: how a command finds and runs a model."""
    from dunet.config import flag_range

    p.add_argument("--model", help="name of a pretrained model (see `dunet models`); face / pose: the default one")
    p.add_argument("--flip", action="store_true", help="average with the prediction on the mirrored image")
    p.add_argument("--batch-size", type=flag_range(int, 1, 1 << 16), default=batch_size)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bfloat16 where the CPU or GPU computes it natively, else fp32")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    p.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnx", "torch"],
                   help="what runs the network (dunet.runtime.backends); auto: the fastest installed, OpenVINO in "
                        "every install; torch needs dunet[train]")
    p.add_argument("--threads", type=flag_range(int, 0, 4096), default=0,
                   help="CPU threads; 0: every usable core that other work does not keep busy when the model loads; "
                        "more than the usable cores: capped to them, with a warning")


def model_and_inputs(checkpoint: str | None, inputs: list[str], model: str | None) -> tuple[str | None, list[str]]:
    """(the model path, the inputs) of a command taking `[CHECKPOINT] INPUTS... [--model NAME]`: with --model,
    argparse took the first input for the checkpoint, so every positional argument is an input."""
    if model is not None and checkpoint is not None:
        return None, [checkpoint, *inputs]
    return checkpoint, list(inputs)


def add_decode_blur_flag(p: argparse.ArgumentParser) -> None:
    """--decode-blur, range-checked when it is parsed (the range of the config key decode_blur)."""
    from dunet.config import flag_range

    p.add_argument("--decode-blur", type=flag_range(float, 0.0, 100.0), metavar="SIGMA",
                   help="blur heatmaps by SIGMA (heatmap px) before sub-pixel decoding; default: the model's decode_blur")


def check_out(path: Path, *, folder: bool) -> None:
    """--out PATH, checked before any work: a DunetError when a folder above it is a file, or when PATH is a
    file where a folder is wanted (`folder`) or a folder where a file is."""
    from dunet import DunetError

    if path.exists() and path.is_dir() != folder:
        raise DunetError(f"--out {path}: is an existing {'file' if folder else 'folder'}; give a "
                         f"{'folder' if folder else 'file name'}")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise DunetError(f"--out {path}: {above} is a file, not a folder")
