"""Files on disk -> (image, mask) pairs: label formats, datasets, download, synthetic data, transforms."""

from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.download import download_voc2012
from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.labels import (
    IGNORE_INDEX,
    VOC_BOUNDARY_COLOR,
    VOC_CLASSES,
    VOC_COLORMAP,
    ClassTable,
    label2image,
    rgb_to_index,
)
from pixelwise.data.synthetic import make_synthetic_voc
from pixelwise.data.transforms import normalize_batch, train_transforms
from pixelwise.data.voc import VOCSegmentation

__all__ = [
    "IGNORE_INDEX", "VOC_BOUNDARY_COLOR", "VOC_CLASSES", "VOC_COLORMAP", "ClassTable",
    "FolderSegmentation", "SegmentationDataset", "VOCSegmentation", "download_voc2012",
    "label2image", "make_synthetic_voc", "normalize_batch", "rgb_to_index", "train_transforms",
]  # fmt: skip
