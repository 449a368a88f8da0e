"""Uploaded photos: checked by their content (never the file name), within the server's limits."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

__all__ = ["UploadError", "CheckedPhoto", "check_photo", "FORMATS"]

#: Image formats the pipeline reads, as Pillow names them -> the suffix the stored file gets. MPO is
#: the JPEG of cameras that store several pictures (phones, stereo); the first one is scored.
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(ValueError):
    """An upload refused; the message says which file and why, in words a user can act on."""


@dataclass(frozen=True)
class CheckedPhoto:
    """A photo that passed: a safe file name (suffix from its content), its bytes and size."""

    name: str
    data: bytes
    width: int
    height: int
    format: str


def _safe_name(original: str, suffix: str) -> str:
    stem = original.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip("._")[:80] or "photo"
    return stem + suffix


def check_photo(original_name: str, data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedPhoto:
    """Check one uploaded file: size, image format read from its bytes, pixel count, integrity.

    Parameters
    ----------
    original_name : str
        The name the browser sent (used only for messages and, cleaned, as the stored name).
    data : bytes
        The file's content.
    max_bytes, max_pixels : int
        Limits; the pixel count is read from the header, before any pixel is decoded.

    Returns
    -------
    CheckedPhoto

    Raises
    ------
    UploadError
        Too large, not an image of a known format (whatever its name says), too many pixels,
        or damaged.
    """
    from PIL import Image, UnidentifiedImageError

    shown = original_name or "the file"
    if len(data) > max_bytes:
        raise UploadError(f"{shown}: {len(data) / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB per photo; "
                          "export a smaller JPEG")  # fmt: skip
    if not data:
        raise UploadError(f"{shown}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
            width, height = im.size
            if fmt not in FORMATS:
                raise UploadError(f"{shown}: a {fmt} image; upload a JPEG, PNG, TIFF, BMP or WebP photo")
            if width * height > max_pixels:
                raise UploadError(f"{shown}: {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
                                  f"{max_pixels / 1e6:.1f}; resize the photo")  # fmt: skip
            im.verify()
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own limit, met before the header's size is ours
        raise UploadError(f"{shown}: its pixel count is over the limit of {max_pixels / 1e6:.1f} megapixels "
                          f"({' '.join(str(exc).split())[:120]}); resize the photo") from None  # fmt: skip
    except UnidentifiedImageError:
        raise UploadError(
            f"{shown}: not an image (its content is not JPEG, PNG, TIFF, BMP or WebP, whatever its name says)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise UploadError(f"{shown}: a damaged image ({' '.join(str(exc).split())[:120]})") from None
    return CheckedPhoto(name=_safe_name(original_name, FORMATS[fmt]), data=data, width=width, height=height, format=fmt)
