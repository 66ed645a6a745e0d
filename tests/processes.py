"""Child processes in tests: a child that crashes fails its test, naming the signal, and never takes the suite down."""

from __future__ import annotations

import signal
import subprocess


def how_it_ended(proc: subprocess.CompletedProcess | subprocess.Popen) -> str:
    """"exit 1", or "killed by SIGSEGV" for a child a signal ended (a negative return code), plus its stderr's end."""
    code = proc.returncode
    ended = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
    stderr = getattr(proc, "stderr", None)
    tail = stderr[-2000:] if isinstance(stderr, str) else ""
    return f"{ended}\n{tail}"
