"""Where cleftscore keeps its caches, and the one way it hashes a file.

One root holds every cache: ``$CLEFTSCORE_CACHE`` when set (``~`` expanded), otherwise
platformdirs' user cache folder for ``cleftscore`` (``~/.cache/cleftscore`` on Linux,
``~/Library/Caches/cleftscore`` on macOS, ``%LOCALAPPDATA%\\cleftscore\\Cache`` on Windows).
Under it:

* ``weights/`` -- downloaded weights (:func:`weights_cache_dir`; :mod:`cleftscore.weights`);
* ``normalized/`` -- GAN normalizations and per-generator w statistics
  (:func:`normalization_cache_dir`; :mod:`cleftscore.normalize`).

These are the folders earlier versions used, so existing caches stay valid. (Earlier, the
normalization cache did not expand a ``~`` at the start of ``$CLEFTSCORE_CACHE``: such a value
made a folder literally named ``~`` in the working directory. Now both caches expand it.)

Nothing here creates a folder; the code that writes a cache does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "normalization_cache_dir", "sha256_file", "weights_cache_dir"]

#: Environment variable naming the cache root.
CACHE_ENV = "CLEFTSCORE_CACHE"

_BLOCK = 1 << 20


def cache_root() -> Path:
    """``$CLEFTSCORE_CACHE`` (``~`` expanded) when set and not empty, else the user cache folder."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cleftscore"))


def weights_cache_dir() -> Path:
    """Where downloaded weights are kept: ``cache_root() / "weights"``."""
    return cache_root() / "weights"


def normalization_cache_dir() -> Path:
    """Where GAN normalizations are cached: ``cache_root() / "normalized"``."""
    return cache_root() / "normalized"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (memory stays flat for large files).

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()
