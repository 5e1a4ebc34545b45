"""U-Net, FPN, DeepLabV3+ and SegFormer: decoders from segmentation_models.pytorch on ResNet or MiT encoders."""

from __future__ import annotations

from pathlib import Path

from pixelwise.models.any_size import AnySize
from pixelwise.models.encoders import load_encoder_weights, without_head

MIT_ENCODERS = ("mit_b0", "mit_b1", "mit_b2")
ARCHITECTURES = {"unet": "Unet", "fpn": "FPN", "deeplabv3plus": "DeepLabV3Plus", "segformer": "Segformer"}


def smp_model(
    architecture: str, *, num_classes: int, encoder: str, encoder_weights: str | Path | None = None
) -> AnySize:
    """smp's `architecture` (a key of ARCHITECTURES) on `encoder`, taking any input size."""
    import segmentation_models_pytorch as smp  # imported on first use: it pulls in timm and huggingface_hub

    network = getattr(smp, ARCHITECTURES[architecture])(encoder_name=encoder, encoder_weights=None, classes=num_classes)
    load_encoder_weights(network.encoder, encoder_weights, encoder=encoder, rename=without_head(("fc.", "head.")))
    return AnySize(network, multiple=network.encoder.output_stride)
