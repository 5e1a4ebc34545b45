"""What runs the model behind the service: torch's inference path or ONNX Runtime on an exported copy."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pixelwise.errors import PixelwiseError

ENGINES = ("auto", "torch", "onnxruntime")


def load_for_serving(checkpoint: str | Path, engine: str = "auto", device: str = "auto"):
    """The model in `checkpoint` (.pt or .onnx) on the engine asked for, and that engine's name.

    "auto" runs a .onnx file on ONNX Runtime; a .pt file on torch on a GPU, or when its network
    has a `segment` of its own (FCN's GEMM upsampler, which ONNX cannot express), and otherwise
    on ONNX Runtime, exported to a temporary file first. `device` is where torch runs it.
    """
    from pixelwise.onnx_model import is_onnx_file, load_onnx
    from pixelwise.device import resolve_device
    from pixelwise.predict import load_model

    if engine not in ENGINES:
        raise PixelwiseError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    exported = is_onnx_file(checkpoint)
    if exported and engine == "torch":
        raise PixelwiseError(f"{checkpoint}: an exported model runs on ONNX Runtime; the torch engine needs the .pt")
    if exported:
        _refuse_gpu(device)
        return load_onnx(checkpoint), "onnxruntime"
    model, where = load_model(checkpoint, "cpu"), resolve_device(device)
    if engine == "auto":  # torch on a GPU, or for FCN's own segment; ONNX Runtime for the rest on a CPU
        engine = "torch" if hasattr(model.network, "segment") or where.type != "cpu" else "onnxruntime"
    if engine == "torch":
        return model.to(where).for_inference(), engine
    _refuse_gpu(device)
    from pixelwise.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="pixelwise-serve-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path)
        return load_onnx(path), engine


def _refuse_gpu(device: str) -> None:
    """One line for a device ONNX Runtime does not run on here."""
    if device not in ("auto", "cpu"):
        raise PixelwiseError(f"ONNX Runtime runs models on the CPU here, not on {device!r}; torch runs a .pt there")
