"""Typed errors; the CLI turns each into one line and exit code 2."""


class PixelwiseError(Exception):
    """Base class of every error pixelwise raises on purpose."""


class DatasetError(PixelwiseError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class DownloadError(PixelwiseError):
    """A download failed or produced a file that does not verify."""


class ModelError(PixelwiseError):
    """A model name, its arguments or its weights are unusable."""


class CheckpointError(PixelwiseError):
    """A checkpoint file is missing, truncated, tampered with or not pixelwise's."""


class TrainingError(PixelwiseError):
    """Training cannot start or cannot go on (unwritable output, diverged loss, ...)."""


class EarlierRunError(TrainingError):
    """A new run was pointed at a folder that holds an earlier run's checkpoints."""

    def __init__(self, message: str, run_dir):
        super().__init__(message)
        self.run_dir = run_dir


class DeviceError(PixelwiseError):
    """The requested device does not exist here or cannot run a model."""
