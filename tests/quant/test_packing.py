"""Packed files: 1 bit per binary and 2 bits per ternary weight, bit-identical outputs after loading."""

import json
import zlib

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from dunet import DunetError
from dunet.models import ModelConfig, build_model
from dunet.models.profile import fp32_bytes
from dunet.quant import QConv2d
from dunet.quant.packing import is_packed_file, load_packed, packed_size_bytes, save_packed

SMALL = dict(channels=16, growth=8, bottleneck=16, landmarks=5, input_size=64, units=2)


def trained(cfg, steps=2):
    """A model whose BN statistics and weights moved away from their initial values."""
    model = build_model(cfg).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    images, targets = torch.rand(2, 3, 64, 64), torch.rand(2, cfg.landmarks, 16, 16)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(F.mse_loss(h, targets) for h in model(images)).backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("arch,block,quant", [
    ("dunet", "bottleneck", "bw-alpha"),
    ("dunet", "bottleneck", "8/1/8"),
    ("dunet", "bottleneck", "tw-alpha-6/2/6"),
    ("dunet", "hierarchical", "tw"),
    ("hourglass", "bottleneck", "bw-alpha-8/1/8"),
    ("hourglass", "hierarchical", "8/2/8"),
    ("dunet", "bottleneck", "bw-alpha-1/1/32"),  # fully binary: sign inputs too
    ("hourglass", "hierarchical", "1/1/32"),
    ("hourglass", "bottleneck", "1/2/8"),
])
def test_round_trip_is_bit_identical(tmp_path, arch, block, quant):
    cfg = ModelConfig(**SMALL, arch=arch, block=block, quant=quant)
    model = trained(cfg)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
    card = {"dunet_card": json.dumps({"model": {"arch": arch, "block": block, "quant": quant}}), "note": "verbatim"}
    path = save_packed(model, card, tmp_path / "model.packed.safetensors")
    metadata, state = load_packed(path)
    assert {k: metadata[k] for k in card} == card
    fresh = build_model(cfg)
    fresh.load_state_dict(state)  # strict: the same keys and shapes
    with torch.no_grad():
        got = fresh.eval()(images)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    for name, module in model.named_modules():  # the quantized weights themselves are equal
        if isinstance(module, QConv2d):
            assert torch.equal(module.quantized_weight(), fresh.get_submodule(name).quantized_weight())


@pytest.mark.parametrize("quant,bits_per_weight", [("bw", 1), ("bw-alpha", 1), ("tw", 2), ("tw-alpha-8/2/8", 2)])
def test_weights_take_one_or_two_bits(tmp_path, quant, bits_per_weight):
    model = build_model(ModelConfig(**SMALL, quant=quant))
    convs = [m for m in model.modules() if isinstance(m, QConv2d)]
    path = save_packed(model, {}, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        bits = f.get_tensor("bits")
        floats = f.get_tensor("floats")
    assert bits.dtype == torch.uint8
    assert bits.numel() == sum(bits_per_weight * ((c.weight.numel() + 7) // 8) for c in convs)
    # floats hold everything that is not a quantized conv weight, BN feeding a QConv folded to 2 numbers
    quantized = sum(c.weight.numel() for c in convs)
    assert floats.numel() < sum(t.numel() for t in model.state_dict().values()) - quantized


def test_packed_dunet16_bw_alpha_size():
    """DU-Net(16) BW-alpha: the 1-bit conv weights are 3.0% of the fp32 file; with alpha, BN (2 floats
    per channel) and the fp32 first and last layers the packed file is under 5% (paper: 2.0 of 62.6 MB,
    weights only)."""
    model = build_model(ModelConfig(units=16, quant="bw-alpha"))
    fp32 = fp32_bytes(model)
    packed = packed_size_bytes(model)
    quantized_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, QConv2d))
    assert quantized_weights / 8 / fp32 < 0.031
    assert packed / fp32 < 0.05


def test_packed_size_counts_the_file(tmp_path):
    model = build_model(ModelConfig(**SMALL, quant="bw"))
    path = save_packed(model, {}, tmp_path / "m.safetensors")
    assert path.stat().st_size == packed_size_bytes(model)
    assert packed_size_bytes(model) < 0.2 * fp32_bytes(model)


def test_not_a_packed_file_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    assert not is_packed_file(plain) and not is_packed_file(garbage) and not is_packed_file(tmp_path / "missing")
    with pytest.raises(DunetError, match="plain.safetensors: not a packed dunet model"):
        load_packed(plain)
    with pytest.raises(DunetError, match="garbage.safetensors: not a safetensors file"):
        load_packed(garbage)
    with pytest.raises(DunetError, match="missing.safetensors: cannot read"):
        load_packed(tmp_path / "missing.safetensors")


def test_damaged_packed_file_is_a_clear_error(tmp_path):
    model = build_model(ModelConfig(**SMALL, quant="bw"))
    path = save_packed(model, {}, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    tensors["bits"] = tensors["bits"][:-10]  # truncated bit planes
    save_file(tensors, str(path), metadata=metadata)
    assert is_packed_file(path)
    # The last binary tensor in the file is the one whose bits are cut off: it is named.
    layout = json.loads(zlib.decompress(tensors["layout"].numpy().tobytes()))
    last_binary = [entry["key"] for entry in layout if entry["kind"] == "binary"][-1]
    with pytest.raises(DunetError, match=f"m.safetensors: damaged packed model .*tensor '{last_binary}': bit data "
                                         "ends early"):
        load_packed(path)


def test_packed_weights_with_nan_are_refused_at_load(tmp_path):
    model = build_model(ModelConfig(**SMALL, quant="bw-alpha"))
    name = next(n for n, t in model.state_dict().items() if t.is_floating_point() and t.dim() == 1)
    with torch.no_grad():
        model.state_dict()[name][0] = float("nan")
    path = save_packed(model, {}, tmp_path / "m.safetensors")
    with pytest.raises(DunetError, match=f"m.safetensors: damaged weights: tensor\\(s\\) {name} hold NaN"):
        load_packed(path)
