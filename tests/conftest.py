"""Shared fixtures: the real data beside the repo, a small synthetic VOC tree, a check of two runs' weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pixelwise.checkpoint import load_checkpoint
from pixelwise.data.synthetic import make_synthetic_voc

SHARED_DATA = Path(os.environ.get("PIXELWISE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent (it ships beside the repo in CI only)")
    return path


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """../shared/data/camvid: 367 train and 101 val street photos, 11 classes."""
    return shared_dataset("camvid")


@pytest.fixture(scope="session")
def voc_samples_root() -> Path:
    """../shared/data/voc-samples: 14 VOC photos with RGB colour-map labels."""
    return shared_dataset("voc-samples")


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory) -> Path:
    """A VOC2012 folder of 12 train and 4 val synthetic images with 4 classes; do not modify."""
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_voc(out, num_train=12, num_val=4, num_classes=4, size_range=(40, 90), seed=3)


def _assert_same_weights(first: Path, second: Path) -> None:
    """Bit-for-bit equal weights in two checkpoints: the model's, and the trained ones a run with an average keeps."""
    checkpoints = load_checkpoint(first), load_checkpoint(second)
    for field in ("state_dict", "trained_state_dict"):
        assert (field in checkpoints[0]) == (field in checkpoints[1]), f"{field} in one checkpoint only"
        if field in checkpoints[0]:
            a, b = (checkpoint[field] for checkpoint in checkpoints)
            different = [key for key in a if not torch.equal(a[key], b[key])]
            assert a.keys() == b.keys() and not different, f"{field}: {len(different)} tensors differ: {different[:3]}"


@pytest.fixture(scope="session")
def assert_same_weights():
    """`assert_same_weights(first, second)`: two checkpoints hold the same weights."""
    return _assert_same_weights
