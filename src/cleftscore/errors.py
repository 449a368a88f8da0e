"""Exception types shared by every stage.

A :class:`CleftscoreError` is a user-facing problem (bad photo, missing weights, malformed
checkpoint). Its message is one line that names the file and says what to do; the CLI prints it
in red and goes on with the rest of a batch, instead of showing a traceback.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "CleftscoreError",
    "ImageLoadError",
    "FaceNotFoundError",
    "CheckpointError",
    "WeightsMissingError",
    "DownloadError",
    "environment_problem",
]

#: OS errors that are the machine's, not the input's: what each is called in a message.
_ENVIRONMENT = {
    _errno.ENOSPC: "the disk is full",
    getattr(_errno, "EDQUOT", _errno.ENOSPC): "the disk quota is used up",
    _errno.EROFS: "the file system is read-only",
    _errno.EACCES: "permission denied",
    _errno.EPERM: "permission denied",
}


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


def environment_problem(exc: BaseException) -> str | None:
    """What is wrong with the machine when ``exc`` (or what caused it) is a full disk, a denied
    permission or a read-only file system; None for any other error.

    Such a failure says nothing about the photo or the study, so callers keep what they had
    (a previous good result) and name the problem instead of calling the data damaged.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ENVIRONMENT:
            return _ENVIRONMENT[current.errno]
        current = current.__cause__ or current.__context__
    return None
