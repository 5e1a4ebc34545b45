"""An exported ONNX model run by ONNX Runtime, segmenting photos as a Segmenter does."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from pixelwise.errors import CheckpointError, ModelError
from pixelwise.export import CLASSES_OUTPUT, INPUT_NAME, INSTALL_HINT
from pixelwise.segmenter import ImageLike, predict_photo


def _runtime():
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"running an ONNX model needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def _metadata_value(path: Path, metadata: dict, key: str):
    """The JSON value of metadata `key`, or one line saying the file was not exported by pixelwise."""
    try:
        return json.loads(metadata[key])
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{path}: no readable {key!r} in its ONNX metadata; export the model with pixelwise export"
        ) from None


def _classes_and_palette(path: Path, metadata: dict) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """The class names and palette the file's metadata records, checked to belong together."""
    names, palette = _metadata_value(path, metadata, "class_names"), _metadata_value(path, metadata, "palette")
    names_ok = isinstance(names, list) and 0 < len(names) <= 256 and all(isinstance(name, str) for name in names)
    palette_ok = isinstance(palette, list) and len(palette) == len(names) and all(
        isinstance(color, list) and len(color) == 3 and all(type(value) is int and 0 <= value <= 255 for value in color)
        for color in palette
    )  # fmt: skip
    if not (names_ok and palette_ok):
        raise CheckpointError(f"{path}: its ONNX metadata's class names and palette do not match")
    return tuple(names), tuple(tuple(color) for color in palette)


class OnnxSegmenter:
    """A file written by `export_onnx`, run by ONNX Runtime on the CPU: class names, palette and masks of photos."""

    def __init__(self, path: str | Path, *, threads: int | None = None):
        runtime, path = _runtime(), Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'file not found'}")
        options = runtime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = runtime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types, one per failure
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{path}: not an ONNX model ONNX Runtime can load ({reason})") from None
        if [node.name for node in self.session.get_inputs()] != [INPUT_NAME]:
            raise CheckpointError(f"{path}: expected one input named {INPUT_NAME!r}; export it with pixelwise export")
        outputs = {node.name: node.type for node in self.session.get_outputs()}
        if outputs.get(CLASSES_OUTPUT) != "tensor(uint8)":
            raise CheckpointError(
                f"{path}: expected a uint8 output named {CLASSES_OUTPUT!r}; export it with pixelwise export"
            )
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.class_names, self.palette = _classes_and_palette(path, metadata)
        self.model_record = _metadata_value(path, metadata, "model")
        if not (isinstance(self.model_record, dict) and isinstance(self.model_record.get("name"), str)):
            raise CheckpointError(f"{path}: its ONNX metadata's 'model' is not a model record with a name")
        self.path = path

    @property
    def model_name(self) -> str:
        """The registered name of the exported network."""
        return self.model_record["name"]

    def segment_photos(self, photos: np.ndarray, *, precision: str = "fp32") -> np.ndarray:
        """Class-index masks (N, H, W) uint8 of photos (N, H, W, 3) uint8 of one size; fp32 (or auto) only."""
        refuse_bf16(precision)
        feed = {INPUT_NAME: np.ascontiguousarray(photos, dtype=np.uint8)}
        return self.session.run([CLASSES_OUTPUT], feed)[0]

    def predict(self, image: ImageLike, *, max_side: int | None = 2048, precision: str = "fp32") -> np.ndarray:
        """Class-index mask (H, W) uint8 of a photo at its own size, as `Segmenter.predict`."""
        return predict_photo(partial(self.segment_photos, precision=precision), image, max_side)


def refuse_bf16(precision: str) -> None:
    """One line for a precision an exported model cannot run in: it computes in float32 ("auto" means that here)."""
    if precision not in ("fp32", "auto"):
        raise ModelError(
            f"an exported ONNX model runs in fp32, not {precision}; use the .pt checkpoint for {precision}"
        )


def is_onnx_file(path: str | Path) -> bool:
    """Whether `path` names an exported model (by its .onnx suffix) rather than a .pt checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def load_onnx(path: str | Path, *, threads: int | None = None) -> OnnxSegmenter:
    """An OnnxSegmenter for a file written by `pixelwise export`; `threads` caps ONNX Runtime's (default: all cores)."""
    return OnnxSegmenter(path, threads=threads)
