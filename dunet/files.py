"""Writing files so that a crash or a full disk never leaves half of one: the one home of atomic writes, for model
files, checkpoints, label tables, predictions and logs. No PyTorch."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dunet import DunetError


def sibling(path: Path, tag: str) -> Path:
    """The hidden file beside `path` that a save writes first (`tmp`) or keeps the previous copy in (`old`)."""
    return path.parent / f".{path.name}.{tag}"


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in `path` durable (POSIX only; elsewhere a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_file(target: str | os.PathLike, data: bytes | str, what: str = "this file") -> None:
    """Write `data` (text is written as UTF-8) to `target` through a synced temporary sibling and a rename: a
    failure (a full disk) leaves any earlier `target` whole and no temporary file, and is one line naming `what`
    could not be written. The temporary file is this process's own: two commands writing one file each write it
    whole, the later one last."""
    target = Path(target)
    data = data.encode("utf-8") if isinstance(data, str) else data
    tmp = sibling(target, f"{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_synced(tmp, data)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as err:
        with contextlib.suppress(OSError):  # e.g. the parent is a file: there is no temporary file to remove
            tmp.unlink(missing_ok=True)
        raise DunetError(f"{target}: cannot write {what} ({err.strerror or err})") from None


def cache_dir() -> Path:
    """Where dunet keeps what it makes once and reuses (converted models, compiled networks): $DUNET_CACHE, else
    ~/.cache/dunet."""
    return Path(os.environ.get("DUNET_CACHE") or Path.home() / ".cache" / "dunet")
