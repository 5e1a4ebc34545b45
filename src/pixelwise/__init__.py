"""pixelwise: semantic segmentation from D2L's FCN to real training, evaluation and prediction."""

__version__ = "0.1.0"

from pixelwise.config import TrainConfig  # noqa: E402
from pixelwise.errors import CheckpointError, DatasetError, DownloadError, ModelError, PixelwiseError, TrainingError  # noqa: E402
from pixelwise.models import MODELS, build_model, fcn_resnet18  # noqa: E402
from pixelwise.predict import Segmenter, load_model, predict  # noqa: E402
from pixelwise.training import evaluate_split as evaluate  # noqa: E402
from pixelwise.training import train  # noqa: E402

__all__ = [
    "CheckpointError", "DatasetError", "DownloadError", "MODELS", "ModelError", "PixelwiseError",
    "Segmenter", "TrainConfig", "TrainingError", "__version__", "build_model", "evaluate",
    "fcn_resnet18", "load_model", "predict", "train",
]  # fmt: skip
