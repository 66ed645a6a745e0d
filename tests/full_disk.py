"""A disk that fills up, for fault tests and bench/bad_inputs.py: while `full_disk(FOLDER, ROOM)` is active,
files opened for writing under FOLDER take ROOM bytes in all; the write that does not fit puts down what
fits and fails with ENOSPC, as a full disk does. Python's own writes, and OpenVINO's save_model (its files
are cut to what fits and it raises a RuntimeError, as OpenVINO's writer does); other native writers
(torch.onnx) write past it.

    python -m tests.full_disk FOLDER ROOM dunet ARGS...   # the CLI on such a disk; its exit status
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path


class FullDisk:
    def __init__(self, folder, room: int):
        self.folder, self.room, self.real_open = str(Path(folder).resolve()), room, builtins.open

    def open(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        writing = any(m in mode for m in "wax+")
        if not writing or isinstance(file, int) or not str(Path(file).resolve()).startswith(self.folder):
            return handle
        disk, real_write = self, handle.write

        def write(data):
            fits = data[:max(disk.room, 0)]
            disk.room -= len(data)
            real_write(fits)
            if len(fits) < len(data):
                handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

        handle.write = write
        return handle

    def openvino_writer(self, real_save):
        """openvino.save_model on this disk: the IR is written, then cut to the room left, as a full disk would."""
        def save_model(model, path, *args, **kwargs):
            real_save(model, path, *args, **kwargs)
            if not str(Path(path).resolve()).startswith(self.folder):
                return
            for file in (Path(path), Path(path).with_suffix(".bin")):
                size, fits = file.stat().st_size, max(self.room, 0)
                self.room -= size
                if size > fits:
                    os.truncate(file, fits)
                    raise RuntimeError(f"Exception from src/core/src/pass/serialize.cpp:\n"
                                       f"Can't write {file}: No space left on device\n")
        return save_model


@contextmanager
def full_disk(folder, room: int):
    disk = FullDisk(folder, room)
    builtins.open = io.open = disk.open
    openvino = sys.modules.get("openvino") or _import_openvino()
    real_save = getattr(openvino, "save_model", None)
    if real_save is not None:
        openvino.save_model = disk.openvino_writer(real_save)
    try:
        yield disk
    finally:
        builtins.open = io.open = disk.real_open
        if real_save is not None:
            openvino.save_model = real_save


def _import_openvino():
    try:
        import openvino
    except ImportError:
        return None
    return openvino


if __name__ == "__main__":
    from dunet.cli import main

    folder, room, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if command[:1] == ["dunet"]:
        command = command[1:]
    with full_disk(folder, room):
        sys.exit(main(command))
