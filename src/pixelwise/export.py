"""A Segmenter as a self-describing ONNX file: uint8 photos in, class indices (and logits when asked) out."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from pixelwise._version import __version__
from pixelwise.errors import ModelError
from pixelwise.files import replace_file
from pixelwise.models.fcn import with_torch_upsampling
from pixelwise.segmenter import Segmenter

INSTALL_HINT = "pip install 'pixelwise[onnx]'"  # export and ONNX Runtime come with this extra
OPSET = 18  # the opset torch's dynamo exporter targets by default; onnxruntime runs it
INPUT_NAME = "photos"  # (N, H, W, 3) uint8 RGB, as photos are decoded
CLASSES_OUTPUT = "classes"  # (N, H, W) uint8 class indices
LOGITS_OUTPUT = "logits"  # (N, C, H, W) float32, only in files exported with logits
SMALLEST_EXAMPLE = (2, 67, 75)  # batch, height, width the tracer sees: sizes that pin nothing down


class PhotoNetwork(nn.Module):
    """A Segmenter's network behind its normalisation: (N, H, W, 3) uint8 -> class indices, and logits if asked."""

    def __init__(self, segmenter: Segmenter, *, logits: bool):
        super().__init__()
        self.network = with_torch_upsampling(segmenter.for_inference().network)  # a copy: for_inference folds one
        self.network.to(memory_format=torch.contiguous_format).cpu()
        self.register_buffer("mean", torch.tensor(segmenter.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(segmenter.std).view(1, 3, 1, 1) * 255)
        self.logits = logits

    def forward(self, photos: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class indices (N, H, W) uint8 of photos (N, H, W, 3) uint8; with logits (N, C, H, W) when asked."""
        x = (photos.permute(0, 3, 1, 2).float() - self.mean) / self.std
        logits = self.network(x)
        classes = logits.argmax(dim=1).to(torch.uint8)
        return (classes, logits) if self.logits else classes


def metadata(segmenter: Segmenter, *, logits: bool) -> dict[str, str]:
    """The ONNX metadata that makes the file self-describing: model record, class names, palette, a description."""
    record = segmenter.model_record
    return {
        "pixelwise_version": __version__,
        "model": json.dumps(record),
        "class_names": json.dumps(list(segmenter.class_names)),
        "palette": json.dumps([list(color) for color in segmenter.palette]),
        "description": (
            f"pixelwise {record['name']} on {record['encoder']}, {record['num_classes']} classes. "
            f"Input '{INPUT_NAME}': uint8 RGB (N, H, W, 3), any H and W, normalisation inside. "
            f"Output '{CLASSES_OUTPUT}': uint8 class indices (N, H, W)"
            + (f"; '{LOGITS_OUTPUT}': float32 (N, C, H, W)." if logits else ".")
        ),
    }


def written_by_export(path: str | Path) -> bool:
    """Whether `path` is an ONNX file that `export_onnx` wrote (its metadata names a pixelwise version)."""
    try:
        import onnx
    except ImportError:
        raise ModelError(f"exporting needs onnx: {INSTALL_HINT}") from None
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # protobuf's decode error, or an unreadable file: not one of ours either way
        return False
    return any(entry.key == "pixelwise_version" for entry in model.metadata_props)


def export_onnx(segmenter: Segmenter, path: str | Path, *, logits: bool = False) -> None:
    """Write `segmenter` to `path` as ONNX: dynamic batch, height and width; metadata per `metadata`."""
    if len(segmenter.class_names) > 256:
        raise ModelError(f"{len(segmenter.class_names)} classes do not fit the uint8 class output (at most 256)")
    module = PhotoNetwork(segmenter, logits=logits).eval()
    batch, height, width = SMALLEST_EXAMPLE
    example = torch.zeros((batch, height, width, 3), dtype=torch.uint8)
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC}
    outputs = [CLASSES_OUTPUT, LOGITS_OUTPUT] if logits else [CLASSES_OUTPUT]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME], output_names=outputs,
                dynamic_shapes=({**dims},), verbose=False, optimize=True,
            )  # fmt: skip
    except ImportError as error:  # torch's exporter imports onnx and onnxscript when it runs
        raise ModelError(f"exporting needs {error.name or error}: {INSTALL_HINT}") from None
    except Exception as error:  # the exporter raises its own types, one per failure
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"torch's ONNX exporter failed on {segmenter.model_name}: {first_line[:300]}") from None
    model = program.model_proto
    for key, value in metadata(segmenter, logits=logits).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    replace_file(Path(path), model.SerializeToString())
