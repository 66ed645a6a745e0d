"""Progress of a training run (`RunProgress`, one bar over every epoch) or of an evaluation (`progress`): a tqdm
bar on a terminal, and in a log file (a background run, CI) a line every `every` seconds with images/s and the
time left, so a long run is never silent."""

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


class RunProgress:
    """One bar for a whole training run: the images of every epoch still to train, and the time left at the
    run's average speed so far. The average counts validation and checkpoints too (tqdm's smoothing=0), so the
    time left is the run's, not the current epoch's. `start(total)` once the size of an epoch is known."""

    def __init__(self, *, log: Callable[[str], None] = print, every: float = 60.0, enabled: bool = True):
        self.log, self.every, self.enabled = log, every, enabled
        self.total = self.done = 0
        self.started = self.last = 0.0
        self.bar = None

    def start(self, total_images: int) -> None:
        self.total, self.done = total_images, 0
        self.started = self.last = time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_images, unit="img", smoothing=0, dynamic_ncols=True)

    def batches(self, batches: Iterable, desc: str) -> Iterator:
        """Yield each batch of `batches` (one epoch), counting its images."""
        if self.bar is not None:
            self.bar.set_description(desc)
        for batch in batches:
            yield batch
            if not self.enabled:
                continue
            count = _count(batch)
            self.done += count
            if self.bar is not None:
                self.bar.update(count)
                continue
            now = time.perf_counter()
            if now - self.last >= self.every and self.done < self.total:
                self.last = now
                rate = self.done / (now - self.started)
                self.log(f"{desc}: {self.done}/{self.total} images of the run, {rate:.1f} img/s, "
                         f"{_minutes((self.total - self.done) / rate)} left")

    def write(self, line: str) -> None:
        """`log(line)` above the bar, which is drawn again below it."""
        if self.bar is None:
            self.log(line)
            return
        with self.bar.external_write_mode():
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _count(batch) -> int:
    images = batch["image"] if isinstance(batch, dict) else batch
    return len(images)
