"""The study's content-addressed files: stored photo copies and score pictures.

Files live under ``<db>.files/`` as ``photos/<h[:2]>/<h>.png`` (``h``: SHA-256 of the original
photo file) and ``pictures/<h[:2]>/<h><suffix>`` (``h``: SHA-256 of the picture's bytes). A file
is written under a temporary name and renamed, before the database row that names it is
committed; a crash in between leaves an unreferenced file that the next import of the same
content simply finds again.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoredPhoto", "sha256_bytes", "store_photo", "store_bytes"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredPhoto:
    """A photo copied into the study: hashes, relative path and size of the stored copy."""

    sha256: str
    stored_path: str
    stored_sha256: str
    width: int
    height: int


def _encode_png(image: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # A fresh image from the pixels alone: no EXIF, GPS, ICC or text chunks travel along.
    Image.fromarray(image).save(buf, format="PNG", optimize=False)  # type: ignore[arg-type]
    return buf.getvalue()


def store_bytes(root: Path, data: bytes, *, suffix: str, folder: str = "pictures") -> str:
    """Write ``data`` once under its hash; return the path relative to ``root``."""
    h = sha256_bytes(data)
    return _put(root, f"{folder}/{h[:2]}/{h}{suffix}", data)


def _put(root: Path, rel: str, data: bytes) -> str:
    from cleftscore.io import atomic_write_bytes

    target = root / rel
    if not target.is_file() or target.stat().st_size != len(data):
        atomic_write_bytes(target, data)
    return rel


def store_photo(root: Path, path: str | os.PathLike[str], *, sha256: str | None = None) -> StoredPhoto:
    """Copy a photo into the study: EXIF orientation applied, 8-bit RGB, PNG without metadata.

    The file is read once: its hash and the stored copy come from the same bytes.

    Parameters
    ----------
    root : Path
        The study's file folder.
    path : path
        The original photo.
    sha256 : str, optional
        The hash the caller took of the photo it means (e.g. of the bytes it scored); the
        file's bytes must still have it.

    Returns
    -------
    StoredPhoto

    Raises
    ------
    ImageLoadError
        When the photo cannot be read (the message names the file).
    CleftscoreError
        When its bytes no longer have the hash ``sha256`` (the file changed).
    """
    from cleftscore.errors import CleftscoreError, ImageLoadError
    from cleftscore.io import load_image_bytes

    try:
        original = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{path}: is a folder, not an image file") from None
    h = sha256_bytes(original)
    if sha256 is not None and h != sha256:
        raise CleftscoreError(f"{path}: the file changed while it was being scored (its SHA-256 is no longer that of "
                              "the bytes scored); nothing was recorded, score it again")  # fmt: skip
    image = load_image_bytes(original, name=str(path))  # EXIF orientation applied, alpha dropped, uint8 RGB
    data = _encode_png(image)
    rel = _put(root, f"photos/{h[:2]}/{h}.png", data)
    return StoredPhoto(
        sha256=h,
        stored_path=rel,
        stored_sha256=sha256_bytes(data),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
    )
