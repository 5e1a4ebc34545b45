"""pixelwise: semantic segmentation from D2L's FCN to real training, evaluation and prediction."""

from pixelwise._version import __version__
from pixelwise.config import TrainConfig
from pixelwise.errors import (
    CheckpointError,
    DatasetError,
    DownloadError,
    ModelError,
    PixelwiseError,
    TrainingError,
)
from pixelwise.export import export_onnx
from pixelwise.models import MODELS, build_model, fcn_resnet18
from pixelwise.onnx_model import OnnxSegmenter, load_onnx
from pixelwise.predict import Segmenter, load_model, predict
from pixelwise.training import evaluate_split as evaluate
from pixelwise.training import train

__all__ = [
    "CheckpointError", "DatasetError", "DownloadError", "MODELS", "ModelError", "OnnxSegmenter", "PixelwiseError",
    "Segmenter", "TrainConfig", "TrainingError", "__version__", "build_model", "evaluate", "export_onnx",
    "fcn_resnet18", "load_model", "load_onnx", "predict", "train",
]  # fmt: skip
