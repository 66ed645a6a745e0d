"""read_weights: the numpy state dict of every kind of model file, as PyTorch loads it."""

import json
import zlib

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dunet import DunetError
from dunet.card import ModelCard
from dunet.checkpoint import load_checkpoint, save_checkpoint
from dunet.data.spec import spec_from_names
from dunet.engine.config import TrainConfig
from dunet.models import ModelConfig, build_model
from dunet.quant.packing import load_packed, save_packed
from dunet.runtime.weights import read_weights

SMALL = ModelConfig(units=2, input_size=32, levels=2, landmarks=5, channels=16, bottleneck=16, growth=8)


def card(model: ModelConfig = SMALL) -> ModelCard:
    return TrainConfig(model=model).model_card(spec_from_names("dots", [f"dot{i}" for i in range(5)]))


def assert_same(arrays: dict[str, np.ndarray], tensors: dict[str, torch.Tensor]) -> None:
    assert arrays.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert arrays[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(arrays[name], tensor.numpy(), err_msg=name)


@pytest.mark.parametrize("int8_weights", [False, True])
def test_single_file_model_as_pytorch_loads_it(tmp_path, int8_weights):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(SMALL), card(), int8_weights=int8_weights)
    metadata, arrays = read_weights(path)
    assert metadata["format"] == "dunet-checkpoint" and "dunet_card" in metadata
    assert_same(arrays, load_checkpoint(path).state_dict)
    assert all(a.dtype == np.float32 for name, a in arrays.items() if not name.endswith("num_batches_tracked"))


def test_checkpoint_run_directory_and_old_copy(tmp_path):
    model = build_model(SMALL)
    run = tmp_path / "run"
    save_checkpoint(run / "last", model, card())
    save_checkpoint(run / "best", model, card())
    expected = load_checkpoint(run / "best").state_dict
    assert_same(read_weights(run / "best")[1], expected)
    assert_same(read_weights(run)[1], expected)  # a run directory: its best/
    (run / "best").rename(run / ".best.old")  # a save crashed between its two renames
    assert_same(read_weights(run / "best")[1], expected)
    assert_same(read_weights(run)[1], expected)


def test_packed_file_as_pytorch_loads_it(tmp_path):
    path = save_packed(build_model(SMALL.replace(quant="tw-alpha")), {"note": "kept"}, tmp_path / "m.safetensors")
    metadata, arrays = read_weights(path)
    expected_metadata, expected = load_packed(path)
    assert metadata == expected_metadata and metadata["note"] == "kept" and metadata["format"] == "dunet-packed"
    assert_same(arrays, expected)


def test_truncated_packed_file_names_the_tensor(tmp_path):
    path = save_packed(build_model(SMALL.replace(quant="bw")), {}, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["bits"] = tensors["bits"][:-10]
    save_file(tensors, str(path), metadata=metadata)
    layout = json.loads(zlib.decompress(tensors["layout"].numpy().tobytes()))
    last_binary = [entry["key"] for entry in layout if entry["kind"] == "binary"][-1]
    with pytest.raises(DunetError, match=f"m.safetensors: damaged packed model .*tensor '{last_binary}': bit data "
                                         "ends early"):
        read_weights(path)


def test_files_that_are_not_dunet_models_are_named(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(DunetError, match="plain.safetensors: a safetensors file but not a dunet model"):
        read_weights(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DunetError, match="garbage.safetensors: corrupt or truncated"):
        read_weights(garbage)
    with pytest.raises(DunetError, match="missing: no such checkpoint"):
        read_weights(tmp_path / "missing")
    with pytest.raises(DunetError, match=f"{tmp_path.name}: not a dunet checkpoint"):
        read_weights(tmp_path)


def test_weights_with_nan_are_refused(tmp_path):
    model = build_model(SMALL)
    with torch.no_grad():
        model.stem[0].weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "m.safetensors", model, card())
    with pytest.raises(DunetError, match=r"m.safetensors: damaged weights: tensor\(s\) stem.0.weight hold NaN"):
        read_weights(path)
