"""Turn a --data SPEC (voc2012, synthetic, or a path) into a dataset."""

from __future__ import annotations

from pathlib import Path

from pixelwise.data.dataset import PairTransform, SegmentationDataset
from pixelwise.data.download import download_voc2012
from pixelwise.data.folder import FolderSegmentation, is_folder_tree
from pixelwise.data.synthetic import make_synthetic_voc
from pixelwise.data.voc import VOCSegmentation, is_voc_tree
from pixelwise.errors import DatasetError

DEFAULT_ROOTS = {"voc2012": Path("data"), "synthetic": Path("data", "synthetic")}


def prepare_data(spec: str, *, root: str | Path | None = None, download: bool = False) -> Path:
    """The folder a SPEC names, creating synthetic data or downloading VOC when asked."""
    if spec == "synthetic":
        folder = Path(root) if root else DEFAULT_ROOTS["synthetic"]
        return folder if is_voc_tree(folder) else make_synthetic_voc(folder)
    if spec == "voc2012":
        folder = Path(root) if root else DEFAULT_ROOTS["voc2012"]
        if download:
            return download_voc2012(folder)
        if not is_voc_tree(folder):
            raise DatasetError(f"{folder}: no VOC2012 tree here; download it (2 GB) or give the folder that holds one")
        return folder
    folder = Path(spec)
    if not folder.exists():
        raise DatasetError(f"{folder}: no such dataset folder (or use voc2012 or synthetic)")
    return folder


def open_dataset(folder: str | Path, split: str, transforms: PairTransform | None = None) -> SegmentationDataset:
    """A VOC tree or a folder-layout dataset at `folder`, whichever it is."""
    if is_voc_tree(folder):
        return VOCSegmentation(folder, split, transforms)
    if is_folder_tree(folder):
        return FolderSegmentation(folder, split, transforms)
    raise DatasetError(
        f"{folder}: neither a VOC tree (ImageSets/Segmentation) nor a folder dataset (classes.csv, images/, labels/)"
    )
