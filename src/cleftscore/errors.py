"""Exception types shared by every stage.

A :class:`CleftscoreError` is a user-facing problem (bad photo, missing weights, malformed
checkpoint). Its message is one line that names the file and says what to do; the CLI prints it
in red and goes on with the rest of a batch, instead of showing a traceback.
"""

from __future__ import annotations

__all__ = [
    "CleftscoreError",
    "ImageLoadError",
    "FaceNotFoundError",
    "CheckpointError",
    "WeightsMissingError",
    "DownloadError",
]


class CleftscoreError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class ImageLoadError(CleftscoreError):
    """A photo could not be read or converted to 8-bit RGB."""


class FaceNotFoundError(CleftscoreError):
    """No usable face was found in a photo."""


class CheckpointError(CleftscoreError):
    """A weights file is malformed, truncated, of another architecture, or unsafe."""


class WeightsMissingError(CleftscoreError):
    """Model weights that a command needs are not on this machine."""


class DownloadError(CleftscoreError):
    """A weights download failed (offline, HTTP error, checksum mismatch)."""
