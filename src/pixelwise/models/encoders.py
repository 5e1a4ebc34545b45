"""Encoder weights: none, ImageNet (downloaded once into torch's hub cache) or a local state-dict file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from pixelwise.errors import ModelError
from pixelwise.torchfile import load_weights_only

RESNET_ENCODERS = ("resnet18", "resnet34", "resnet50")
# torchvision's ImageNet classifiers; smp's ResNet encoders are torchvision's ResNets, key for key.
IMAGENET_URLS = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1.url,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1.url,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1.url,
    "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1.url,
}
Rename = Callable[[str], "str | None"]
"""Maps a classifier's state-dict key to the encoder's, or None for a key the encoder has no use for."""


def without_head(head: str | tuple[str, ...]) -> Rename:
    """A Rename keeping a classifier's keys as they are, except those under `head` (its fc layer), dropped."""
    return lambda key: None if key.startswith(head) else key


def _checkpoint_folder() -> Path:
    """Where torch.hub keeps downloaded weights (TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_state_dict(encoder: str) -> dict:
    """The ImageNet classifier weights of `encoder`, downloaded on first use and checked against their hash."""
    if encoder not in IMAGENET_URLS:
        return _smp_imagenet_state_dict(encoder)
    url = IMAGENET_URLS[encoder]
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    except Exception as error:  # urllib, SSL, hash and disk errors all mean "not available"
        raise ModelError(
            f"could not get ImageNet {encoder} weights ({str(error).strip() or type(error).__name__}): download {url} "
            f"into {_checkpoint_folder()}, or give the file's path as the encoder weights, or train with none"
        ) from None


def _smp_imagenet_state_dict(encoder: str) -> dict:
    """ImageNet weights of an smp encoder that torchvision lacks (SegFormer's MiT), through smp's own hub download."""
    import segmentation_models_pytorch as smp

    try:
        return smp.encoders.get_encoder(encoder, weights="imagenet").state_dict()
    except Exception as error:  # huggingface_hub's connection and cache errors
        repo = smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]["repo_id"]
        raise ModelError(
            f"could not get ImageNet {encoder} weights ({str(error).splitlines()[0] if str(error) else error!r}): "
            f"where there is internet, `huggingface-cli download {repo}` puts them in the Hugging Face cache "
            "(HF_HOME) that is read here; or give a state-dict file's path as the encoder weights, or train with none"
        ) from None


def _state_dict_from_file(path: Path, encoder: str) -> dict:
    """A state dict saved with torch.save, loaded without running pickled code."""
    state = load_weights_only(path, f"{encoder} weights file", ModelError)
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a {encoder} state dict of tensors, found {type(state).__name__}")
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelError(
            f"{path}: expected a {encoder} state dict of tensors, found a dict holding other values "
            "(a pixelwise checkpoint is not an encoder's weights)"
        )
    return state


def load_encoder_weights(
    module: nn.Module, weights: str | Path | None, *, encoder: str, rename: Rename = lambda key: key
) -> None:
    """Load `weights` ("none", "imagenet" or a state-dict path) into `module`, refusing any that do not fit.

    Keys are mapped by `rename` first (a classifier's head maps to None and is dropped); a missing,
    unexpected or mis-shaped tensor is refused naming the first few keys.
    """
    if weights is None or weights == "none":
        return
    source = imagenet_state_dict(encoder) if weights == "imagenet" else _state_dict_from_file(Path(weights), encoder)
    renamed = {new: value for key, value in source.items() if (new := rename(key)) is not None}
    expected = module.state_dict()
    missing = [key for key in expected if key not in renamed]
    unexpected = [key for key in renamed if key not in expected]
    misshapen = [
        f"{key} {tuple(renamed[key].shape)} for {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in renamed and renamed[key].shape != tensor.shape
    ]
    if missing or unexpected or misshapen:
        found = [f"missing {missing[:3]}"] * bool(missing) + [f"unexpected {unexpected[:3]}"] * bool(unexpected)
        raise ModelError(f"{weights}: not {encoder} weights ({', '.join(found + misshapen[:3])})")
    module.load_state_dict(renamed)
