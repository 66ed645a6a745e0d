"""Landmark data: one sample schema, dataset specs, readers, augmentation, heatmap codec and the
built-in synthetic faces. See docs/data.md."""

from dunet.data.dataset import LandmarkDataset, build_loader, crop_image
from dunet.data.heatmaps import decode, default_sigma, encode_gaussian, heatmaps_to_image
from dunet.data.readers import open_source
from dunet.data.sample import BadItem, Sample, Source, normaliser
from dunet.data.spec import SPECS, DatasetSpec, spec_from_coco_category

__all__ = [
    "BadItem", "DatasetSpec", "LandmarkDataset", "SPECS", "Sample", "Source", "build_loader", "crop_image",
    "decode", "default_sigma", "encode_gaussian", "heatmaps_to_image", "normaliser",
    "open_source", "spec_from_coco_category",
]
