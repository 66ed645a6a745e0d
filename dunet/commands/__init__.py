"""The subcommands of `dunet`, one module each; the flags that choose and run a model are defined once here,
so they mean the same in every command."""

from __future__ import annotations

import argparse


def add_model_flags(p: argparse.ArgumentParser, batch_size: int) -> None:
    """--model, --flip, --batch-size, --precision, --device and --backend: how a command finds and runs a model."""
    from dunet.config import flag_range

    p.add_argument("--model", help="name of a pretrained model (see `dunet models`)")
    p.add_argument("--flip", action="store_true", help="average with the prediction on the mirrored image")
    p.add_argument("--batch-size", type=flag_range(int, 1, 1 << 16), default=batch_size)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bfloat16 where the CPU or GPU computes it natively, else fp32")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "openvino"],
                   help="what runs the network; auto: the fastest installed (OpenVINO, onnxruntime, PyTorch), "
                        "a PyTorch model converted once and cached (docs/api.md)")
