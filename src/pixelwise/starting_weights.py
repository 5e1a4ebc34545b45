"""Fine-tuning: a new run that starts from the network weights of a checkpoint instead of random ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pixelwise.checkpoint import load_checkpoint, load_weights
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pixelwise.errors import DatasetError, ModelError
from pixelwise.models import LEGACY_ENCODER, build_from_record
from pixelwise.onnx_model import is_onnx_file


@dataclass(frozen=True)
class StartingWeights:
    """A checkpoint's network, its weights loaded, and what it was trained as."""

    path: Path
    model: str
    encoder: str
    class_names: tuple[str, ...]
    network: torch.nn.Module
    when: str  # ", epoch 60" after an epoch, ", in epoch 5" within one, "" when the file does not say

    def describe(self) -> str:
        """'runs/a/last.pt (fpn on resnet18, epoch 60)'."""
        return f"{self.path} ({self.model} on {self.encoder}{self.when})"

    def refuse_other_classes(self, class_names: tuple[str, ...]) -> None:
        """Refuse data whose classes are not the ones the weights' last layer scores, in the same order."""
        if tuple(class_names) == self.class_names:
            return
        pairs = zip(self.class_names, class_names)
        first = next((index for index, (theirs, ours) in enumerate(pairs) if theirs != ours), None)
        differs = (
            f"class {first} is {self.class_names[first]!r} there and {class_names[first]!r} here"
            if first is not None
            else f"{len(self.class_names)} classes there, {len(class_names)} here"
        )
        raise DatasetError(
            f"{self.path}: trained on other classes than the data's ({differs}): a run that starts from a "
            "checkpoint keeps its classes and their order, so train on data with them or start from random weights"
        )


def _model_of(payload: dict) -> tuple[str, str]:
    """The model and encoder of a checked checkpoint payload."""
    record = payload["model"]
    return record["name"], record.get("encoder", LEGACY_ENCODER)


def _checked_payload(path: Path | str) -> dict:
    """load_checkpoint's payload; an exported model is refused naming what to give instead."""
    if is_onnx_file(path):
        raise ModelError(f"{path}: an exported model; a run starts from the .pt checkpoint it was exported from")
    return load_checkpoint(path)


def checkpoint_model(path: Path | str) -> tuple[str, str]:
    """The model and encoder a checkpoint holds, as a run's settings would name them."""
    return _model_of(_checked_payload(path))


def _when(payload: dict) -> str:
    """Where in its run a checkpoint was saved, as StartingWeights.when says it."""
    epoch = payload.get("epoch")
    if type(epoch) is not int:
        return ""
    return f", in epoch {epoch}" if payload.get("progress") else f", epoch {epoch}"


def starting_weights(path: Path | str, model: str, encoder: str) -> StartingWeights:
    """The weights of checkpoint `path`, refused unless they are a `model` on `encoder` fed as the run feeds it."""
    payload = _checked_payload(path)
    theirs = _model_of(payload)
    if theirs != (model, encoder):
        raise ModelError(
            f"{path}: holds {theirs[0]} on {theirs[1]}, and this run trains {model} on {encoder}: a run that starts "
            "from a checkpoint trains the checkpoint's model and encoder"
        )
    normalization = payload["normalization"]
    if (tuple(normalization["mean"]), tuple(normalization["std"])) != (IMAGENET_MEAN, IMAGENET_STD):
        raise ModelError(
            f"{path}: its network was fed photos normalised with mean {normalization['mean']} and std "
            f"{normalization['std']}; training normalises with ImageNet's mean and std, so it cannot start from it"
        )
    network = build_from_record(payload["model"])
    load_weights(path, network, payload["state_dict"], model)  # refused now, not after the data check
    class_names = tuple(payload["class_names"])
    return StartingWeights(Path(path), model, encoder, class_names, network, _when(payload))
