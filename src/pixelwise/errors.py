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
    """A new run was pointed at a folder that holds an earlier run's checkpoints (`resumable`: a last.pt among them)."""

    def __init__(self, message: str, run_dir, resumable: bool):
        super().__init__(message)
        self.run_dir, self.resumable = run_dir, resumable


class SettingsError(TrainingError):
    """Settings no run can use, named as TrainConfig's fields (the command line shows its flags instead)."""


class DeviceError(PixelwiseError):
    """The requested device does not exist here or cannot run a model."""


def one_line(error: BaseException) -> str:
    """The error as one line: an OSError with its file, one re-raised from a DataLoader worker without the traceback."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    message = str(error).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message


def reworded(error: PixelwiseError, message: str) -> PixelwiseError:
    """`error`, of the same type and with the same attributes, saying `message`."""
    error.args = (message,)
    return error
