"""Image files to (H, W, 3) uint8 RGB arrays, with errors that name the file.

Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted. EXIF orientation is
applied only on request (`upright=True`, what `dunet predict` does for camera photos): annotations of
the common data sets refer to the stored pixel grid. `load_reduced` decodes a large image at 1/2, 1/4 or
1/8 of its size (a JPEG without ever holding its full-size pixels), for predictions whose crops are far
smaller than the image.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from dunet import DunetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# Decompression-bomb guard, raised for large scans but still a guard.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000

# EXIF orientations (1-8) that swap width and height, and those that mirror the upright x or y axis.
SWAPS_AXES, MIRRORS_X, MIRRORS_Y = {5, 6, 7, 8}, {2, 3, 6, 7}, {3, 4, 7, 8}
REDUCTIONS = (1, 2, 4, 8)  # the scales a JPEG decoder produces directly (libjpeg's DCT scaling)
BYTES_PER_DECODED_PIXEL = 6  # the decoder's RGB pixels and the array made of them
CHECK_MEMORY_ABOVE = 256 * 2**20  # smaller images are decoded without asking the OS for its free memory


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


def image_size(path: str | os.PathLike, *, upright: bool = False) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels; `upright`: of the image turned
    as its EXIF orientation says (see load_image)."""
    with _reading(path, "cannot read image header"), Image.open(path) as image:
        width, height = image.size
        return (height, width) if upright and _orientation(image) in SWAPS_AXES else (width, height)


def check_image(path: str | os.PathLike) -> None:
    """Decode `path` through to its end, as training will, with the least memory its format allows: a JPEG at
    1/8 scale (every byte is still read, so truncation and corrupt data show), a PNG by its chunk checksums
    (no pixels at all). `dunet data check` uses it: a 12,000 px scan must not take gigabytes to check."""
    with _reading(path, "corrupt image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            _check_mode(image, path)  # as loading for training will
            if image.format == "PNG":
                problem = _png_data_problem(path)  # verify() passes a PNG whose pixels are cut off or absent
                if problem:
                    raise DunetError(f"{path}: {problem}")
                image.verify()
                return
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: grey, RGB, palette, grey + alpha, RGBA
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_problem(path) -> str | None:
    """What is wrong with a PNG's pixel data, or None: its IDAT chunks are inflated as a stream, 1 MiB at a time
    (a 20,000 px scan is checked without its 1.2 GB of pixels), and must give every row its header promises."""
    expected, inflated, inflate, block = None, 0, zlib.decompressobj(), 2**20
    with open(path, "rb") as file:
        file.seek(8)  # the signature: Pillow has read it
        while len(head := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR" and length == 13:
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", file.read(13))
                bits = depth * PNG_CHANNELS.get(colour, 4)
                passes = ADAM7 if interlace else ((0, 0, 1, 1),)
                sizes = [(-(-(width - x) // dx), -(-(height - y) // dy)) for x, y, dx, dy in passes]
                expected = sum(h * (1 + -(-w * bits // 8)) for w, h in sizes if w > 0 and h > 0)
                length = 0
            elif kind == b"IDAT":
                try:
                    while length and (expected is None or inflated < expected):
                        data = file.read(min(length, block))
                        length -= len(data) if data else length
                        inflated += len(inflate.decompress(data, block))
                        while inflate.unconsumed_tail and inflated < (expected or 0):
                            inflated += len(inflate.decompress(inflate.unconsumed_tail, block))
                except zlib.error as err:
                    return f"corrupt image ({err})"
            elif kind == b"IEND":
                break
            file.seek(length + 4, 1)  # the rest of the chunk's data, then its CRC
    if expected is not None and inflated < expected:
        return f"truncated image file (pixel data for {inflated * 100 // expected} % of the image)"
    return None


def load_image(path: str | os.PathLike, *, upright: bool = False) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; `upright`: rotate / mirror it as its EXIF
    orientation tag says, so that it is the way a photo viewer shows it."""
    return load_reduced(path, 1, upright=upright).pixels


@dataclass(frozen=True)
class ReducedImage:
    """An image decoded at 1/factor of its size in each direction: pixel (i, j) of `pixels` is the mean of a
    factor x factor block of the full image and is centred on its pixel factor * (i, j) + offset."""

    pixels: np.ndarray  # (h, w, 3) uint8 RGB
    full_size: tuple[int, int]  # (width, height) of the full image
    factor: int = 1
    offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def of(cls, rgb: np.ndarray) -> "ReducedImage":
        """An image already in memory, as it is."""
        return cls(rgb, (rgb.shape[1], rgb.shape[0]))

    def to_full(self, points) -> np.ndarray:
        """(N, 2) pixel positions (x, y) in `pixels` to the same positions in the full image."""
        return np.asarray(points, np.float64) * self.factor + self.offset

    def from_full(self, points) -> np.ndarray:
        return (np.asarray(points, np.float64) - self.offset) / self.factor


def load_reduced(path: str | os.PathLike, factor: int, *, upright: bool = False) -> ReducedImage:
    """Decode `path` at 1/factor of its size (factor 1, 2, 4 or 8; `upright` as in load_image). A JPEG
    decodes straight to that size, so its full-size pixels never exist in memory; other formats are
    decoded, then averaged down. A DunetError when the decoded pixels would not fit in the free memory."""
    if factor not in REDUCTIONS:
        raise ValueError(f"factor {factor}: must be one of {REDUCTIONS}")
    with _reading(path, "corrupt image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            full_width, full_height = image.size
            orientation = _orientation(image) if upright else 1
            drafted = 1  # the factor the JPEG decoder itself reduces by
            if factor > 1 and image.format == "JPEG":
                request = (max(1, full_width // factor), max(1, full_height // factor))
                _, area = image.draft(image.mode, request) or (None, None)
                drafted = round(full_width / area[2]) if area else 1
            _check_memory(path, (full_width, full_height), full_width * full_height // drafted**2)
            image.load()  # decode now: truncated files fail here, not later
            if factor > drafted:
                image = _reducible(image).reduce(factor // drafted)
            pixels = to_rgb8(image, path)
    pixels = _turned_upright(pixels, orientation)
    if orientation in SWAPS_AXES:
        full_width, full_height = full_height, full_width
    # A block's centre; on a mirrored axis the partial block at the far edge of the stored image comes first.
    centre = (factor - 1) / 2
    offset = (centre + (full_width - factor * pixels.shape[1] if orientation in MIRRORS_X else 0),
              centre + (full_height - factor * pixels.shape[0] if orientation in MIRRORS_Y else 0))
    return ReducedImage(pixels, (full_width, full_height), factor, offset)


def _turned_upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels the way EXIF `orientation` says to show them (as ImageOps.exif_transpose turns them), turned
    in numpy once the decoder has let go of its copy."""
    if orientation == 1:
        return pixels
    turned = {2: pixels[:, ::-1], 3: pixels[::-1, ::-1], 4: pixels[::-1], 5: pixels.transpose(1, 0, 2),
              6: pixels.transpose(1, 0, 2)[:, ::-1], 7: pixels.transpose(1, 0, 2)[::-1, ::-1],
              8: pixels.transpose(1, 0, 2)[::-1]}[orientation]
    return np.ascontiguousarray(turned)


def reduction_for(side: float, needed: float) -> int:
    """The largest factor in REDUCTIONS that still leaves `side` pixels at least `needed` pixels long."""
    return max(f for f in REDUCTIONS if f == 1 or side / f >= needed)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) from the file's header: a PNG's eXIf chunk after its pixels (rare) is not
    looked for, since Pillow would decode the whole image to find it."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    orientation = image.getexif().get(0x0112, 1)
    return orientation if orientation in range(1, 9) else 1


def _reducible(image: Image.Image) -> Image.Image:
    """`image` in a mode that Image.reduce averages and to_rgb8 reads the same way."""
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode in ("P", "1"):
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image


def _check_memory(path, size: tuple[int, int], pixels: int) -> None:
    needed = pixels * BYTES_PER_DECODED_PIXEL
    free = _free_memory() if needed > CHECK_MEMORY_ABOVE else None
    if free is not None and needed > free:
        width, height = size
        raise DunetError(f"{path}: a {width}x{height} image needs {needed / 2**30:.1f} GiB to decode, more than "
                         f"the {free / 2**30:.1f} GiB of free memory")


def _free_memory() -> int | None:
    """Bytes of memory the OS can give without swapping (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_mode(image: Image.Image, path) -> None:
    if image.mode == "F":
        raise DunetError(f"{path}: floating-point images are not supported; save it as 8- or 16-bit")


def to_rgb8(image: Image.Image, path: str | os.PathLike = "image") -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit gray: keep the top of the range (65535 -> 255). Mode "I" is how some 16-bit files open.
        gray = np.asarray(image, dtype=np.float64)
        gray = np.clip(gray, 0, 65535) / 257.0
        return np.repeat(np.round(gray).astype(np.uint8)[:, :, None], 3, axis=2)
    _check_mode(image, path)
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
