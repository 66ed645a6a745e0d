"""Landmark data: one sample schema, dataset specs, readers, augmentation, heatmap codec and the
built-in synthetic faces. See docs/data.md."""

from dunet.data.dataset import EpochSampler, LandmarkDataset, build_loader, crop_image
from dunet.data.heatmaps import HeatmapCodec, decode, encode_gaussian
from dunet.data.readers import open_source
from dunet.data.sample import BadItem, Sample, Source, normaliser
from dunet.data.spec import SPECS, DatasetSpec, spec_from_coco_category
from dunet.data.transforms import Augmentation

__all__ = [
    "Augmentation", "BadItem", "DatasetSpec", "EpochSampler", "HeatmapCodec", "LandmarkDataset", "SPECS", "Sample",
    "Source", "build_loader", "crop_image", "decode", "encode_gaussian", "normaliser",
    "open_source", "spec_from_coco_category",
]
