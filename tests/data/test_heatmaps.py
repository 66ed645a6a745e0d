import numpy as np
import pytest
import torch

from dunet import DunetError

from dunet.data.heatmaps import STRIDE, HeatmapCodec, encode_gaussian
from dunet.data.heatmaps import decode as decode_numpy
from dunet.models import ModelConfig, build_model


def decode(*args, **kwargs):
    """The decoder's numpy results as tensors, to compare with the torch-made targets."""
    return tuple(torch.from_numpy(a) for a in decode_numpy(*args, **kwargs))


def _points(generator, shape, size, margin=1.0):
    return torch.rand(*shape, 2, generator=generator) * (size - 1 - 2 * margin) + margin


@pytest.mark.parametrize("size", [64, 32])
def test_encode_decode_sub_pixel(size):
    sigma = HeatmapCodec(size * STRIDE).sigma  # 1 px at 64, scaled with the resolution
    assert sigma == size / 64
    g = torch.Generator().manual_seed(0)
    points = _points(g, (4, 17), size)
    maps = encode_gaussian(points, torch.ones(4, 17), size, sigma)
    assert maps.shape == (4, 17, size, size)
    taylor, peak = decode(maps, refine="taylor")
    assert (taylor - points).abs().max() < 0.05
    quarter, _ = decode(maps, refine="quarter")
    argmax, _ = decode(maps, refine="none")
    # Each refinement does better than the one before it.
    assert (taylor - points).abs().mean() < (quarter - points).abs().mean() < (argmax - points).abs().mean()
    assert (quarter - points).abs().max() <= 0.25 + 0.5 + 1e-6
    assert torch.all(argmax == argmax.round())
    # The peak value is the Gaussian at the argmax pixel.
    expected_peak = torch.exp(-((argmax - points) ** 2).sum(-1) / (2 * sigma**2))
    assert peak.shape == (4, 17) and torch.allclose(peak, expected_peak, atol=1e-5)


def test_peak_value_and_shape():
    maps = encode_gaussian(torch.tensor([[10.0, 20.0]]), torch.ones(1), 32, 1.5)
    assert maps[0, 20, 10] == pytest.approx(1.0)
    assert maps[0, 20, 11] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-5)
    assert maps[0, 22, 12] == pytest.approx(np.exp(-8 / (2 * 1.5**2)), rel=1e-5)


def test_unlabelled_and_nan_points_give_empty_maps():
    points = torch.tensor([[5.0, 5.0], [float("nan"), 3.0], [7.0, 7.0]])
    maps = encode_gaussian(points, torch.tensor([1.0, 1.0, 0.0]), 16, 1.0)
    assert maps[0].max() == 1.0 and maps[1].abs().max() == 0 and maps[2].abs().max() == 0


def test_numpy_and_torch_encoders_agree():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 31, size=(3, 5, 2)).astype(np.float32)
    visible = (rng.random((3, 5)) < 0.7).astype(np.float32)
    as_numpy = encode_gaussian(points, visible, 32, 0.5)
    as_torch = encode_gaussian(torch.from_numpy(points), torch.from_numpy(visible), 32, 0.5)
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32
    np.testing.assert_allclose(as_numpy, as_torch.numpy(), atol=1e-6)


def test_blurred_decoding_of_noisy_maps():
    g = torch.Generator().manual_seed(2)
    points = _points(g, (2, 10), 64, margin=6)
    maps = encode_gaussian(points, torch.ones(2, 10), 64, 1.5) + 0.02 * torch.rand(2, 10, 64, 64, generator=g)
    plain, _ = decode(maps, refine="taylor")
    smooth, _ = decode(maps, refine="taylor", blur_sigma=1.0)
    assert (smooth - points).abs().mean() < 0.1
    assert (smooth - points).abs().mean() <= (plain - points).abs().mean() + 1e-6


@pytest.mark.parametrize("sigma, shape", [(1.5, (2, 3, 32, 32)), (1.0, (4, 24, 40)), (0.4, (1, 9, 7))])
def test_blur_is_a_zero_padded_gaussian_convolution(sigma, shape):
    from dunet.data.heatmaps import _blur

    maps = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    reference = _reference_blur(maps, sigma)
    blurred = torch.from_numpy(_blur(maps.numpy().reshape(-1, *shape[-2:]), sigma)).reshape(shape)
    assert torch.allclose(blurred, reference, atol=1e-6)


def _reference_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    kernel = (taps[:, None] * taps[None, :]) / taps.sum() ** 2
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    return torch.nn.functional.conv2d(flat, kernel[None, None], padding=radius).reshape(maps.shape)


@pytest.mark.parametrize("refine", ["none", "quarter", "taylor"])
def test_blurred_decoding_finds_the_blurred_peak_and_keeps_its_height(refine):
    g = torch.Generator().manual_seed(4)
    points = _points(g, (3, 17), 32, margin=3)
    maps = encode_gaussian(points, torch.ones(3, 17), 32, 1.0) + 0.05 * torch.randn(3, 17, 32, 32, generator=g)
    coords, peak = decode(maps, refine=refine, blur_sigma=1.5)
    # The same as decoding the blurred maps themselves (a log-based step ignores their scale) ...
    expected, _ = decode(_reference_blur(maps, 1.5), refine=refine)
    np.testing.assert_allclose(coords, expected, atol=1e-4)
    # ... whose peak value is the map's own: a blurred landmark is as confident as it was.
    np.testing.assert_allclose(peak, maps.amax((-2, -1)).numpy(), atol=1e-6)


def test_heatmap_and_input_coordinates_are_inverse_and_flip_consistent():
    codec = HeatmapCodec(256)
    x = torch.tensor([0.0, 13.7, 255.0])
    assert torch.allclose(codec.to_input(codec.to_heatmap(x)), x)
    # Mirroring the input (x -> S-1-x) mirrors the heatmap (h -> H-1-h), as flip testing needs.
    assert torch.allclose(codec.to_heatmap(255 - x), 63 - codec.to_heatmap(x))


def test_decode_to_image_applies_the_crop_affine():
    codec = HeatmapCodec(256)
    points = torch.tensor([[[10.25, 20.5], [30.0, 3.75]]])
    maps = encode_gaussian(points, torch.ones(1, 2), 64, 1.0)
    affine = torch.tensor([[[2.0, 0.0, 100.0], [0.0, 2.0, 50.0]]])
    image = torch.from_numpy(codec.decode_to_image(maps, affine)[0])
    expected = codec.to_input(points) * 2 + torch.tensor([100.0, 50.0])
    assert torch.allclose(image, expected, atol=0.05 * 4 * 2)


@pytest.mark.parametrize("input_size, blur", [(64, 0.0), (256, 0.0), (256, 1.5)])
def test_codec_round_trips_points_in_input_pixels(input_size, blur):
    codec = HeatmapCodec(input_size, blur=blur)
    rng = np.random.default_rng(3)
    # Inside the map, a sigma or more from its border: a peak cut by the border shifts.
    margin = STRIDE * (1 + codec.sigma)
    points = rng.uniform(margin, input_size - 1 - margin, size=(12, 2)).astype(np.float32)
    heatmaps, visible = codec.encode(points, np.ones(12, np.float32))
    assert heatmaps.shape == (12, codec.heatmap_size, codec.heatmap_size) and visible.all()
    decoded, _ = codec.decode(heatmaps)
    # 0.05 heatmap pixels of sub-pixel error, in input pixels.
    assert np.abs(decoded - points).max() < 0.05 * STRIDE


def test_codec_drops_points_off_the_heatmap():
    codec = HeatmapCodec(64)
    points = np.array([[10.0, 20.0], [-3.0, 20.0], [30.0, 64.5], [float("nan"), 5.0]], np.float32)
    heatmaps, visible = codec.encode(points, np.ones(4, np.float32))
    np.testing.assert_array_equal(visible, [1, 0, 0, 0])
    assert heatmaps[0].max() > 0 and np.abs(heatmaps[1:]).max() == 0


def test_codec_encodes_batched_torch_points_as_numpy_does_one_sample_at_a_time():
    """tools/gpu_train.py makes its targets on the device from a (B, K, 2) tensor: the same maps and visibility."""
    codec = HeatmapCodec(64, sigma=1.5)
    points = np.array([[[10.0, 20.0], [-3.0, 20.0], [30.2, 40.7]], [[63.4, 1.0], [5.5, 5.5], [30.0, 64.5]]],
                      np.float32)
    visible = np.array([[1, 1, 1], [1, 0, 1]], np.float32)
    maps, kept = codec.encode(torch.from_numpy(points), torch.from_numpy(visible))
    assert isinstance(maps, torch.Tensor) and maps.shape == (2, 3, 16, 16)
    for i in range(2):
        expected_maps, expected_kept = codec.encode(points[i], visible[i])
        np.testing.assert_allclose(maps[i].numpy(), expected_maps, atol=1e-6)
        np.testing.assert_array_equal(kept[i].numpy(), expected_kept)
    np.testing.assert_array_equal(kept.numpy(), [[1, 0, 1], [1, 0, 0]])


def test_the_stride_is_one_fact_shared_by_codec_model_config_and_network():
    codec = HeatmapCodec(64)
    assert codec.heatmap_size == 64 // STRIDE == ModelConfig(input_size=64).heatmap_size
    network = build_model(ModelConfig(units=1, landmarks=3, input_size=64, channels=16, growth=8, bottleneck=16))
    with torch.no_grad():
        out = network.eval()(torch.zeros(1, 3, 64, 64))[-1]
    assert out.shape[-2:] == (codec.heatmap_size, codec.heatmap_size)
    with pytest.raises(DunetError, match=f"multiple of {STRIDE}"):
        HeatmapCodec(66)
