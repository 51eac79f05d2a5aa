"""spamcam's error model: one base class, one subclass per kind of thing a user has to fix.

Every error spamcam raises *on purpose* — something in the user's data, model, settings, disk or device
is wrong and the message says what to do — derives from `SpamcamError`. The console scripts map it to
one line on stderr and exit code 2 (`runtime.cli.run_cli`); anything else that escapes is a bug and is
reported as one. Each subclass also derives from the built-in exception a caller would have caught
before this module existed (`ValueError`, `RuntimeError`, `FileNotFoundError`, `OSError`), so library
code written against those keeps working.

This module is at the bottom of the layering (runtime/, torch-free) so that every layer can use it.
"""
from __future__ import annotations

__all__ = ["SpamcamError", "ConfigError", "DataError", "ModelError", "DeviceError", "DownloadError",
           "BuildError", "NotFoundError", "WriteError"]


class SpamcamError(Exception):
    """Base of every error that a user can fix: the message says what was wrong and what to do."""


class ConfigError(SpamcamError, ValueError):
    """An option or setting is out of range, unknown, or contradicts another one."""


class DataError(SpamcamError, ValueError):
    """A dataset, image or annotation cannot be used as it is (unreadable, inconsistent, empty)."""


class ModelError(SpamcamError, ValueError):
    """A checkpoint, ONNX model or engine is unreadable or disagrees with itself or with the data."""


class DeviceError(SpamcamError, RuntimeError):
    """What the work needs is missing here: a library (TensorRT, ONNX Runtime), a GPU, a DLA, a driver."""


class ServerLost(DeviceError):
    """A model server (Triton) stopped answering during a run and did not come back in time."""


class DownloadError(SpamcamError, RuntimeError):
    """A download failed or brought something other than what was expected."""


class BuildError(SpamcamError, RuntimeError):
    """Quantizing or compiling a model failed (TensorRT's parser or builder, a broken Q/DQ graph)."""


class NotFoundError(SpamcamError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class WriteError(SpamcamError, OSError):
    """An output cannot be written where it was asked for (missing or read-only folder, disk full)."""
