"""The package's own errors: known failures that the CLI turns into one line.

Anything raised as a `TfvaeError` is a problem with the user's input or
environment (a missing file, a bad option, a run that does not exist), and
its message says what was wrong and what to do. Anything else is a bug.
"""

__all__ = [
    "TfvaeError",
    "DataError",
    "ConfigError",
    "RunError",
    "ModelFileError",
    "TrainingDiverged",
    "WriteError",
    "InstallError",
]


class TfvaeError(Exception):
    """Base class: a known failure with a message meant for the user."""


class DataError(TfvaeError):
    """A data file or directory is missing, truncated, corrupt or malformed."""


class ConfigError(TfvaeError):
    """An option or a `config.json` holds a value tfvae cannot use."""


class RunError(TfvaeError):
    """A run directory is missing, not a tfvae run, unfinished or not writable."""


class ModelFileError(TfvaeError):
    """A model file (SavedModel, `.tflite`, checkpoint) is missing or not a tfvae model."""


class TrainingDiverged(TfvaeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class WriteError(TfvaeError):
    """An output file or folder cannot be written (permissions, a full disk, a file in the way)."""


class InstallError(TfvaeError):
    """tfvae's own files (package data such as the vendored web runtime) are missing or damaged: reinstall."""
