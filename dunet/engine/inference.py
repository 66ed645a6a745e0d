"""The torch backend: a dunet network run by PyTorch, for training-side work (eval during training, export,
packing, the balance index) and for GPUs. Inference on the CPU needs none of it (dunet.runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dunet.runtime.model import LandmarkModel


class TorchNetwork:
    """A dunet nn.Module run by PyTorch in eval mode on `device`, under autocast for bf16. `compile`: through
    torch.compile (inductor, frozen weights), which fuses the BN-ReLU and concat passes between convolutions
    (1.4x on DU-Net(8) bf16) but compiles for minutes on its first call per input shape, so it is off by default."""

    backend = "torch"

    def __init__(self, model: nn.Module, precision: str = "auto", device: str | torch.device = "cpu",
                 channels_last: bool = True, compile: bool = False):
        from dunet.engine.hardware import choose_precision, resolve_device

        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.precision, self.precision_reason = choose_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model, options={"freezing": True}) if compile else self.model

    def __call__(self, images) -> np.ndarray:
        return self.tensors(torch.as_tensor(images)).cpu().numpy()

    @torch.no_grad()
    def tensors(self, images: torch.Tensor) -> torch.Tensor:
        """The final head's float heatmaps as a tensor on the device (a distillation teacher's targets)."""
        from dunet.engine.hardware import autocast

        x = images.to(self.device).contiguous(memory_format=self.memory_format)
        with autocast(self.precision, self.device):
            return self.forward(x)[-1].float()


def load_torch_model(path_or_name: str | Path, precision: str = "auto", device: str = "cpu") -> LandmarkModel:
    """The PyTorch network of a checkpoint directory, a run directory, a `.safetensors` or packed model file or a
    pretrained name, as a LandmarkModel run by PyTorch."""
    from dunet.checkpoint import load_checkpoint, load_weights
    from dunet.models import build_model
    from dunet.quant.packing import is_packed_file, load_packed
    from dunet.runtime.pretrained import is_pretrained_name, resolve_pretrained

    path = resolve_pretrained(str(path_or_name)) if is_pretrained_name(str(path_or_name)) else Path(path_or_name)
    if path.is_file() and is_packed_file(path):
        from dunet.card import card_from_metadata
        from dunet.checkpoint import read_training

        metadata, state = load_packed(path)
        card, config = card_from_metadata(metadata, str(path)), read_training(metadata, path)
    else:
        ckpt = load_checkpoint(path)
        path, card, config, state = ckpt.path, ckpt.card, ckpt.config, ckpt
    model = build_model(card.network)
    if isinstance(state, dict):  # a packed file's state dict, else a Checkpoint
        model.load_state_dict(state, strict=True)
    else:
        load_weights(model, state)
    channels_last = config.channels_last if config is not None else True
    network = TorchNetwork(model, precision, device, channels_last=channels_last)
    return LandmarkModel(network, card, source=str(path), training=config)


def torch_model(model: nn.Module, config, spec, precision: str = "auto", device: str | torch.device = "cpu",
                source: str = "") -> LandmarkModel:
    """A network in memory (training, a test) as a LandmarkModel run by PyTorch: its card from its TrainConfig."""
    network = TorchNetwork(model, precision, device, channels_last=config.channels_last)
    return LandmarkModel(network, config.model_card(spec), source=source, training=config)
