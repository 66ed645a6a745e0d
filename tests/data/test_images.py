import numpy as np
from PIL import Image

from dunet.data.images import load_image


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
