"""Tensors -> logits: the registry of models by name, and one file per family."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from torch import nn

from pixelwise.errors import ModelError
from pixelwise.models.encoders import RESNET_ENCODERS
from pixelwise.models.fcn import FCN, fcn_resnet, fcn_resnet18
from pixelwise.models.folding import fold_batch_norms
from pixelwise.models.lraspp import ENCODERS as MOBILE_ENCODERS
from pixelwise.models.lraspp import lraspp
from pixelwise.models.smp_models import MIT_ENCODERS, smp_model


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: `build(*, num_classes, encoder, encoder_weights)`, its encoders, summary and recipe."""

    build: Callable[..., nn.Module]
    encoders: tuple[str, ...]
    summary: str
    min_batch: int = 1  # images per training step its BatchNorm needs (2 where it normalises a pooled 1x1 map)
    optimizer: str = "sgd"  # its recipe: what a run of it uses unless told (docs/training.md says why)
    loss: str = "ce"

    @property
    def default_encoder(self) -> str:
        """The encoder used when none is named: the first listed."""
        return self.encoders[0]


# The smp and torchvision decoders are deep and randomly initialised: AdamW scales each parameter's
# step where one SGD rate suited the FCNs' shallow heads but not them, and dice weighs a thin class
# as much as a wide one.
DECODER_RECIPE = {"optimizer": "adamw", "loss": "ce+dice"}

MODELS: dict[str, ModelSpec] = {
    "fcn32s": ModelSpec(partial(fcn_resnet, variant="32s"), RESNET_ENCODERS, "the seed's FCN-32s (D2L 13.11)"),
    "fcn8s": ModelSpec(partial(fcn_resnet, variant="8s"), RESNET_ENCODERS, "FCN-8s: stride-16 and -8 skips"),
    "unet": ModelSpec(partial(smp_model, "unet"), RESNET_ENCODERS, "U-Net decoder (smp)", **DECODER_RECIPE),
    "fpn": ModelSpec(
        partial(smp_model, "fpn"), RESNET_ENCODERS, "Feature Pyramid Network decoder (smp)", **DECODER_RECIPE
    ),
    "deeplabv3plus": ModelSpec(
        partial(smp_model, "deeplabv3plus"), RESNET_ENCODERS, "DeepLabV3+: atrous pyramid, stride 16 (smp)",
        min_batch=2, **DECODER_RECIPE,
    ),  # fmt: skip
    "segformer": ModelSpec(
        partial(smp_model, "segformer"), MIT_ENCODERS + RESNET_ENCODERS, "SegFormer: MLP decoder, MiT encoder (smp)",
        **DECODER_RECIPE,
    ),  # fmt: skip
    "lraspp": ModelSpec(
        lraspp, MOBILE_ENCODERS, "LR-ASPP on MobileNetV3-Large, the mobile model (torchvision)", **DECODER_RECIPE
    ),
}


DEFAULT_MODEL = "fcn8s"  # what `pixelwise train` trains unless told; docs/training.md says why
LEGACY_ENCODER = "resnet18"  # the encoder of every model saved before encoders could be chosen


def model_spec(name: str) -> ModelSpec:
    """The registry entry of `name`; an unknown name is refused listing the known ones."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def resolve_encoder(name: str, encoder: str | None) -> str:
    """`encoder`, or the model's default when None; one the model does not take is refused listing those it does."""
    spec = model_spec(name)
    if encoder is None:
        return spec.default_encoder
    if encoder not in spec.encoders:
        raise ModelError(f"model {name} has no encoder {encoder!r}; choose one of {', '.join(spec.encoders)}")
    return encoder


def build_model(
    name: str, *, num_classes: int, encoder: str | None = None, encoder_weights: str | Path | None = None
) -> nn.Module:
    """The model registered as `name` on `encoder` (default: the model's); encoder weights none, imagenet or a file."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive whole number, got {num_classes!r}")
    encoder = resolve_encoder(name, encoder)
    return MODELS[name].build(num_classes=num_classes, encoder=encoder, encoder_weights=encoder_weights)


def model_table(num_classes: int = 21) -> list[dict]:
    """One row per model: name, encoders, default encoder, parameters at it, summary, recipe, whether the default."""
    return [
        {
            "name": name,
            "encoders": list(spec.encoders),
            "default_encoder": spec.default_encoder,
            "parameters": _parameter_count(name, num_classes),
            "summary": spec.summary,
            "optimizer": spec.optimizer,
            "loss": spec.loss,
            "default": name == DEFAULT_MODEL,
        }
        for name, spec in MODELS.items()
    ]


def _parameter_count(name: str, num_classes: int) -> int:
    """Parameters of `name` at its default encoder (built for real: some builders read values back)."""
    return sum(parameter.numel() for parameter in build_model(name, num_classes=num_classes).parameters())


def model_record(name: str, *, num_classes: int, encoder: str | None = None) -> dict:
    """Every setting `build_model` takes apart from the weights: what a checkpoint stores to rebuild the model."""
    return {"name": name, "num_classes": num_classes, "encoder": resolve_encoder(name, encoder)}


def build_from_record(record: dict) -> nn.Module:
    """The untrained model a checkpoint's record describes; records from before encoders were named mean ResNet-18."""
    return build_model(record["name"], num_classes=record["num_classes"], encoder=record.get("encoder", LEGACY_ENCODER))


__all__ = [
    "DEFAULT_MODEL", "FCN", "LEGACY_ENCODER", "MODELS", "ModelSpec", "build_from_record", "build_model", "fcn_resnet",
    "fcn_resnet18",
    "fold_batch_norms", "model_record", "model_spec", "resolve_encoder",
]  # fmt: skip
