"""pixelwise: semantic segmentation from D2L's FCN to real training, evaluation and prediction."""

from pixelwise.errors import DatasetError, DownloadError, ModelError, PixelwiseError
from pixelwise.models import MODELS, build_model, fcn_resnet18

__version__ = "0.1.0"

__all__ = [
    "DatasetError", "DownloadError", "MODELS", "ModelError", "PixelwiseError", "__version__",
    "build_model", "fcn_resnet18",
]  # fmt: skip
