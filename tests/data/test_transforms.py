import numpy as np
import pytest

from dunet.data.spec import SPECS
from dunet.data.transforms import (
    Augmentation, apply_affine, apply_color, apply_occluder, crop_matrix, flip_keypoints, invert_affine, square_average,
    warp_image,
)


def _random_crops(rng, count=50):
    for _ in range(count):
        yield dict(
            center=rng.uniform(0, 500, size=2), box_size=float(rng.uniform(20, 600)),
            output_size=int(rng.choice([64, 128, 256])), rotation=float(rng.uniform(-30, 30)),
            flip=bool(rng.random() < 0.5),
        )


def test_keypoints_round_trip_through_affine_and_inverse():
    rng = np.random.default_rng(0)
    for args in _random_crops(rng):
        points = rng.uniform(-50, 600, size=(68, 2))
        matrix = crop_matrix(**args)
        back = apply_affine(apply_affine(points, matrix), invert_affine(matrix))
        assert np.abs(back - points).max() < 0.01


def test_crop_frames_the_box():
    matrix = crop_matrix(np.array([100.0, 50.0]), 80.0, 64)
    mid = (64 - 1) / 2
    np.testing.assert_allclose(apply_affine(np.array([[100.0, 50.0]]), matrix), [[mid, mid]])
    # The box edges land on the crop edges (pixel-centre convention: edges at -0.5 and S - 0.5).
    np.testing.assert_allclose(apply_affine(np.array([[60.0, 10.0], [140.0, 90.0]]), matrix),
                               [[mid - 32, mid - 32], [mid + 32, mid + 32]])
    turned = crop_matrix(np.array([100.0, 50.0]), 80.0, 64, rotation=90)
    # Counter-clockwise on screen: a point right of the centre ends up above it.
    np.testing.assert_allclose(apply_affine(np.array([[140.0, 50.0]]), turned), [[mid, mid - 32]], atol=1e-9)


def _blob(size, centre, sigma=3.0):
    ys, xs = np.mgrid[0:size[0], 0:size[1]]
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("box_size", [60.0, 200.0, 500.0])  # 500 -> 64 px exercises the area pre-shrink
def test_image_and_keypoints_stay_aligned(box_size):
    rng = np.random.default_rng(1)
    centre = np.array([310.3, 270.8])
    sigma = box_size / 40  # about 1.6 output pixels whatever the zoom
    image = (_blob((600, 640), centre, sigma)[:, :, None] * np.ones(3) * 255).astype(np.uint8)
    for _ in range(5):
        matrix = crop_matrix(centre + rng.uniform(-20, 20, size=2), box_size, 64,
                             float(rng.uniform(-30, 30)), bool(rng.random() < 0.5))
        crop = warp_image(image, matrix, 64)[:, :, 0].astype(np.float64)
        ys, xs = np.mgrid[0:64, 0:64]
        found = np.array([(crop * xs).sum(), (crop * ys).sum()]) / crop.sum()
        expected = apply_affine(centre[None], matrix)[0]
        assert np.abs(found - expected).max() < 0.05


def test_crop_outside_the_image_is_black():
    image = np.full((50, 50, 3), 200, dtype=np.uint8)
    crop = warp_image(image, crop_matrix(np.array([500.0, 500.0]), 40.0, 32), 32)
    assert crop.shape == (32, 32, 3) and crop.max() == 0


def test_flip_twice_is_identity_with_pairs_swapped_back():
    spec = SPECS["300w"]
    rng = np.random.default_rng(2)
    points = rng.uniform(0, 200, size=(68, 2))
    visible = (rng.random(68) < 0.8).astype(np.float32)
    once, vis_once = flip_keypoints(points, visible, 200, spec.flip_index())
    # Landmark 36 (right eye, outer corner) now sits where landmark 45 was, mirrored.
    np.testing.assert_allclose(once[36], [199 - points[45, 0], points[45, 1]])
    assert vis_once[36] == visible[45]
    twice, vis_twice = flip_keypoints(once, vis_once, 200, spec.flip_index())
    np.testing.assert_allclose(twice, points)
    np.testing.assert_array_equal(vis_twice, visible)


def test_flip_in_the_crop_matches_flip_of_the_image():
    centre, box = np.array([40.0, 30.0]), 50.0
    plain, mirrored = crop_matrix(centre, box, 64), crop_matrix(centre, box, 64, flip=True)
    points = np.random.default_rng(3).uniform(0, 80, size=(10, 2))
    a, b = apply_affine(points, plain), apply_affine(points, mirrored)
    np.testing.assert_allclose(b[:, 0], 63 - a[:, 0])
    np.testing.assert_allclose(b[:, 1], a[:, 1])
    image = np.random.default_rng(4).integers(0, 255, size=(80, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_image(image, mirrored, 64), warp_image(image, plain, 64)[:, ::-1])


def test_augmentation_ranges():
    rng = np.random.default_rng(5)
    draws = [Augmentation().draw(rng) for _ in range(500)]
    scales = np.array([d.scale for d in draws])
    angles = np.array([d.rotation for d in draws])
    gains = np.array([d.color for d in draws])
    assert 0.75 <= scales.min() and scales.max() <= 1.25 and scales.std() > 0.1
    assert -30 <= angles.min() and angles.max() <= 30 and angles.std() > 10
    assert 0.6 <= gains.min() and gains.max() <= 1.4
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    plain = Augmentation((1.0, 1.0), 0.0, False, 0.0).draw(rng)
    assert plain.scale == 1.0 and plain.rotation == 0.0 and not plain.flip and plain.color == (1.0, 1.0, 1.0)


def test_colour_gain_is_per_channel_and_clipped():
    image = np.full((4, 4, 3), 0.5, dtype=np.float32)
    out = apply_color(image, (0.6, 1.0, 2.5))
    np.testing.assert_allclose(out[0, 0], [0.3, 0.5, 1.0])


def test_occlusion_draws_a_box_inside_the_crop_and_leaves_other_draws_alone():
    draws = [Augmentation(occlusion=0.5).draw(np.random.default_rng(i)) for i in range(400)]
    boxes = np.array([d.occluder for d in draws if d.occluder is not None])
    assert 0.4 < len(boxes) / len(draws) < 0.6
    assert (boxes[:, 2:] >= 0.1).all() and (boxes[:, 2:] <= 0.4).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 1).all()
    # The draws before it are unchanged, so runs without occlusion keep their augmentation.
    for i, d in enumerate(draws):
        plain = Augmentation().draw(np.random.default_rng(i))
        assert plain.occluder is None and (plain.scale, plain.rotation, plain.flip, plain.color) == (
            d.scale, d.rotation, d.flip, d.color)


def test_shift_moves_the_centre_within_its_range_and_leaves_other_draws_alone():
    draws = [Augmentation(occlusion=0.5, shift=0.15).draw(np.random.default_rng(i)) for i in range(400)]
    shifts = np.array([d.shift for d in draws])
    assert np.abs(shifts).max() <= 0.15 and shifts.std(axis=0).min() > 0.06
    for i, d in enumerate(draws):
        plain = Augmentation(occlusion=0.5).draw(np.random.default_rng(i))
        assert plain.shift == (0.0, 0.0) and (plain.scale, plain.rotation, plain.flip, plain.color, plain.occluder) == (
            d.scale, d.rotation, d.flip, d.color, d.occluder)


def test_occluder_paints_only_its_rectangle():
    image = np.zeros((10, 10, 3), dtype=np.float32)
    out = apply_occluder(image, (0.2, 0.5, 0.3, 0.4), (1.0, 0.5, 0.25))
    painted = (out != 0).any(axis=2)
    assert painted[5:9, 2:5].all() and painted.sum() == 12
    np.testing.assert_allclose(out[6, 3], [1.0, 0.5, 0.25])
    assert (image == 0).all()  # the input is not modified


@pytest.mark.parametrize("rotation", [0.0, 17.0])
@pytest.mark.parametrize("box_size", [100.0, 180.0])
def test_the_crop_is_opencvs_bilinear_warp(box_size, rotation):
    """warp_image (numpy, so that inference needs no OpenCV) samples as cv2.warpAffine with INTER_LINEAR and a
    constant black border does, to the rounding of OpenCV's fixed-point arithmetic (positions in 1/32 px: up to 8
    grey levels across the step from a white image to the black outside), crops reaching past the image included."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(6)
    image = cv2.GaussianBlur(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8), (0, 0), 2)
    image[:, :, 2] = 255  # a sharp edge where the image ends
    for centre, most in (([450.3, 350.8], 1), ([30.0, 650.0], 8)):
        matrix = crop_matrix(np.array(centre), box_size, 128, rotation, flip=True)
        crop = warp_image(image, matrix, 128).astype(int)
        expected = cv2.warpAffine(image, matrix, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        difference = np.abs(crop - expected.astype(int))
        assert difference.max() <= most and difference.mean() < 0.1, (centre, difference.max(), difference.mean())


def test_large_reductions_average_blocks_as_opencv_does():
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(7).integers(0, 256, (700, 910, 3), dtype=np.uint8)
    matrix = crop_matrix(np.array([455.0, 350.0]), 960.0, 128)  # the whole image: 7.5 times smaller, 7 by blocks
    crop = warp_image(image, matrix, 128).astype(int)
    # OpenCV: the same 7x7 block means (INTER_AREA at an exact factor), then the same bilinear warp.
    small = cv2.resize(image, (130, 100), interpolation=cv2.INTER_AREA)
    to_small = np.array([[1 / 7, 0, -3 / 7], [0, 1 / 7, -3 / 7], [0, 0, 1]])  # block centres at 3, 10, 17, ...
    local = (np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(to_small))[:2]
    expected = cv2.warpAffine(small, local, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    difference = np.abs(crop - expected.astype(int))  # both round each block's mean, then each sample
    assert difference.max() <= 3 and difference.mean() < 0.2, (difference.max(), difference.mean())


@pytest.mark.parametrize("shape,size", [((960, 1280, 3), 224), ((300, 200, 3), 224), ((150, 120, 3), 128)])
def test_a_padded_square_averages_as_opencvs_inter_area(shape, size):
    """The detectors' input: the image in a black square, averaged to `size`, as OpenCV's copyMakeBorder and
    INTER_AREA resize make it, to one grey level (the last case enlarges)."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.GaussianBlur(np.random.default_rng(8).integers(0, 256, shape, dtype=np.uint8), (0, 0), 2)
    height, width = shape[:2]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    square = cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT)
    expected = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA).astype(int)
    difference = np.abs(square_average(image, (-left, -top), side, size) - expected)
    assert difference.max() <= 1 and difference.mean() < 0.1
