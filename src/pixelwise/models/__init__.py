"""Tensors -> logits: one file per model family."""

from pixelwise.models.fcn import FCN, MODELS, build_model, fcn_resnet18

__all__ = ["FCN", "MODELS", "build_model", "fcn_resnet18"]
