"""Landmark data: one sample schema, dataset specs, readers, augmentation, heatmap codec and the
built-in synthetic faces. See docs/data.md. Names load on first use (`dunet.lazy`): the dataset needs
PyTorch, the spec and the codec do not."""

from dunet.lazy import lazy_exports

_EXPORTS = {
    "EpochSampler": "dunet.data.dataset", "LandmarkDataset": "dunet.data.dataset", "build_loader": "dunet.data.dataset",
    "crop_image": "dunet.data.transforms",
    "HeatmapCodec": "dunet.data.heatmaps", "decode": "dunet.data.heatmaps", "encode_gaussian": "dunet.data.heatmaps",
    "open_source": "dunet.data.readers",
    "BadItem": "dunet.data.sample", "Sample": "dunet.data.sample", "Source": "dunet.data.sample",
    "normaliser": "dunet.data.sample",
    "SPECS": "dunet.data.spec", "DatasetSpec": "dunet.data.spec", "spec_from_coco_category": "dunet.data.spec",
    "Augmentation": "dunet.data.transforms",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
