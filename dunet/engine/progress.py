"""Progress within an epoch or an evaluation: a tqdm bar on a terminal, and in a log file (a background run, CI)
a line every `every` seconds with images/s and the time left, so a long epoch is never silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def progress(batches: Iterable, *, total_images: int, desc: str, log: Callable[[str], None] = print,
             every: float = 60.0, enabled: bool = True) -> Iterator:
    """Yield each batch of `batches` (dicts with an "image" tensor, or tensors), reporting images/s and time left."""
    if not enabled:
        yield from batches
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total_images, desc=desc, unit="img", leave=False) as bar:
            for batch in batches:
                yield batch
                bar.update(_count(batch))
        return
    started = last = time.perf_counter()
    done = 0
    for batch in batches:
        yield batch
        done += _count(batch)
        now = time.perf_counter()
        if now - last >= every and done < total_images:
            last = now
            rate = done / (now - started)
            log(f"{desc}: {done}/{total_images} images, {rate:.1f} img/s, {_minutes((total_images - done) / rate)} left")


def _count(batch) -> int:
    images = batch["image"] if isinstance(batch, dict) else batch
    return len(images)
