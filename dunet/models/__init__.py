"""Model family: DU-Net and its baselines, built from a ModelConfig. Names load on first use
(`dunet.lazy`): the networks need PyTorch, their config does not."""

from dunet.lazy import lazy_exports

_EXPORTS = {
    "ModelConfig": "dunet.models.config", "loss_anchors": "dunet.models.config",
    "DUNet": "dunet.models.dunet", "StackedHourglass": "dunet.models.hourglass",
    "ARCHITECTURES": "dunet.models.build", "build_model": "dunet.models.build",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
