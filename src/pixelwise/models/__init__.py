"""Tensors -> logits: one file per model family."""

from pixelwise.models.fcn import FCN, MODELS, build_model, fcn_resnet18, fold_batch_norms

__all__ = ["FCN", "MODELS", "build_model", "fcn_resnet18", "fold_batch_norms"]
