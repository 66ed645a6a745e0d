"""Image files to (H, W, 3) uint8 RGB arrays, with errors that name the file.

Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted. EXIF orientation is
applied only on request (`upright=True`, what `dunet predict` does for camera photos): annotations of
the common data sets refer to the stored pixel grid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dunet import DunetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# Decompression-bomb guard, raised for large scans but still a guard.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


@contextmanager
def _reading(path: str | os.PathLike, failure: str) -> Iterator[None]:
    """Turn Pillow's and the OS's exceptions into one DunetError naming the file; `failure` describes
    any other read error (Pillow reports truncation as OSError("image file is truncated ..."))."""
    try:
        yield
    except DunetError:
        raise
    except FileNotFoundError:
        raise DunetError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DunetError(f"{path}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise DunetError(f"{path}: not an image file (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        problem = "truncated image file" if "truncated" in str(err).lower() else f"{failure} ({err})"
        raise DunetError(f"{path}: {problem}") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with _reading(path, "cannot read image header"), Image.open(path) as image:
        return image.size


def check_image(path: str | os.PathLike) -> None:
    """Decode `path` through to its end, as training will, with the least memory its format allows: a JPEG at
    1/8 scale (every byte is still read, so truncation and corrupt data show), a PNG by its chunk checksums
    (no pixels at all). `dunet data check` uses it: a 12,000 px scan must not take gigabytes to check."""
    with _reading(path, "corrupt image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()
                return
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()


def load_image(path: str | os.PathLike, *, upright: bool = False) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; `upright`: rotate / mirror it as its EXIF
    orientation tag says, so that it is the way a photo viewer shows it."""
    with _reading(path, "corrupt image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not later
            if upright:
                image = ImageOps.exif_transpose(image)
            return to_rgb8(image, path)


def to_rgb8(image: Image.Image, path: str | os.PathLike = "image") -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit gray: keep the top of the range (65535 -> 255). Mode "I" is how some 16-bit files open.
        gray = np.asarray(image, dtype=np.float64)
        gray = np.clip(gray, 0, 65535) / 257.0
        return np.repeat(np.round(gray).astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "F":
        raise DunetError(f"{path}: floating-point images are not supported; save it as 8- or 16-bit")
    if mode == "L":
        gray = np.asarray(image, dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the palette's transparency needs RGBA before RGB
    if image.mode != "RGB":
        image = image.convert("RGB")  # palette, RGBA/LA (alpha dropped), CMYK, YCbCr, 1-bit
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DunetError(f"{path}: unexpected image layout {array.shape}")
    return np.ascontiguousarray(array)
