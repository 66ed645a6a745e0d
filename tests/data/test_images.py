import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from dunet import DunetError
from dunet.data import images
from dunet.data.images import image_size, load_image, load_reduced


def _photo_rotated_by_exif(path):
    """A 4x2 (w x h) stored image whose EXIF orientation 6 says: rotate 90 degrees clockwise to view."""
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif)


def test_exif_orientation_is_applied_only_when_asked(tmp_path):
    path = tmp_path / "photo.png"
    _photo_rotated_by_exif(path)
    stored = load_image(path)
    upright = load_image(path, upright=True)
    assert stored.shape == (2, 4, 3) and tuple(stored[0, 0]) == (255, 0, 0)
    # Rotated 90 degrees clockwise: 2 wide, 4 high, the stored top-left corner now top-right.
    assert upright.shape == (4, 2, 3) and tuple(upright[0, 1]) == (255, 0, 0)


def _stored(path, pixels, orientation=1, **options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_pixels_sit_exactly_where_they_say_for_every_exif_orientation(tmp_path, orientation):
    # 53 x 37 is no multiple of 4: the partial blocks at the stored image's far edges must not shift the map.
    rng = np.random.default_rng(orientation)
    path = tmp_path / "photo.png"
    _stored(path, rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), orientation)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert (load_image(path, upright=True) == upright).all()
    assert image_size(path, upright=True) == (upright.shape[1], upright.shape[0])
    reduced = load_reduced(path, 4, upright=True)
    assert reduced.full_size == (upright.shape[1], upright.shape[0])
    checked = 0
    for j in range(reduced.pixels.shape[0]):
        for i in range(reduced.pixels.shape[1]):
            x0, y0 = reduced.to_full([[i, j]])[0] - 1.5  # the block's first pixel
            if 0 <= x0 <= upright.shape[1] - 4 and 0 <= y0 <= upright.shape[0] - 4:
                block = upright[int(y0):int(y0) + 4, int(x0):int(x0) + 4].reshape(-1, 3).mean(0)
                assert x0 == int(x0) and y0 == int(y0) and np.abs(block - reduced.pixels[j, i]).max() <= 0.5
                checked += 1
    assert checked == 9 * 13
    np.testing.assert_allclose(reduced.from_full(reduced.to_full([[3.0, 4.0]])), [[3.0, 4.0]])


def test_a_jpeg_is_decoded_reduced_by_its_decoder(tmp_path):
    """libjpeg's DCT scaling gives the block means (up to JPEG's rounding) at 1/8 of the memory."""
    smooth = np.add.outer(np.arange(400), np.arange(640)) % 256
    path = tmp_path / "photo.jpg"
    _stored(path, np.stack([smooth, smooth[::-1], 255 - smooth], -1).astype(np.uint8), quality=98)
    full = load_image(path)
    for factor in (2, 8):
        reduced = load_reduced(path, factor)
        h, w = 400 // factor, 640 // factor
        assert reduced.pixels.shape == (h, w, 3) and reduced.offset == ((factor - 1) / 2,) * 2
        means = full.reshape(h, factor, w, factor, 3).mean((1, 3))
        assert np.median(np.abs(means - reduced.pixels)) <= 2


def test_decoding_a_large_jpeg_reduced_never_holds_its_full_pixels(tmp_path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (6000, 6000), (120, 90, 60)).save(path)  # 108 MB of pixels at full size
    code = ("import resource, sys; from dunet.data.images import load_reduced; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"assert load_reduced({str(path)!r}, 8).pixels.shape == (750, 750, 3); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    grown_kib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout)
    assert grown_kib < 20 * 1024


def test_an_image_that_cannot_fit_in_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "scan.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setattr(images, "CHECK_MEMORY_ABOVE", 0)
    monkeypatch.setattr(images, "_free_memory", lambda: 100_000)
    with pytest.raises(DunetError, match=rf"{path}: a 400x300 image needs .* GiB to decode, more than the .* GiB"):
        load_image(path)
