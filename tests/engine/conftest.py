import pytest
import yaml

TINY = {
    "model": {"arch": "dunet", "units": 1, "order": 1, "landmarks": 68, "input_size": 64, "channels": 16,
              "bottleneck": 16, "growth": 8},
    "data": {"train": "synthetic:24:0", "val": "synthetic:8:1", "workers": 0},
    "optim": {"batch_size": 8, "epochs": 2, "lr": 1e-3, "milestones": [1], "gammas": [0.5]},
    "threads": 1,
}


@pytest.fixture
def tiny_config(tmp_path):
    """Path to a YAML recipe that trains in about a second per epoch."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
