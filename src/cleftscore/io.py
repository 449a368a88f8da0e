"""Load and save photographs as 8-bit RGB arrays.

Every photo that enters cleftscore goes through :func:`load_image`: any common format (JPEG,
PNG, TIFF, BMP, WebP, GIF, and HEIC/HEIF when the optional ``pillow-heif`` package is
installed), EXIF orientation applied, transparency composited on white, grayscale, palette,
CMYK and 16-bit/float images converted to 8-bit RGB, and a pixel-count limit against
decompression bombs. Anything that goes wrong becomes one :class:`ImageLoadError` line that
names the file.

The atomic file writers every stage uses live here too: :func:`write_png`, :func:`write_json`,
:func:`atomic_write_bytes` and the folder swap :func:`replace_folder`.

This module imports no other cleftscore module except :mod:`cleftscore.errors`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cleftscore.errors import ImageLoadError

__all__ = [
    "ProcessLock",
    "to_jsonable",
    "write_json",
    "write_png",
    "IMAGE_SUFFIXES",
    "atomic_write_bytes",
    "find_images",
    "link_or_copy",
    "replace_folder",
    "restore_replaced_folders",
    "MIN_SIDE",
    "load_image",
    "load_image_bytes",
    "save_image",
    "image_to_uint8_rgb",
]

logger = logging.getLogger(__name__)

#: File suffixes (lower case) that :func:`load_image` is expected to read; used to expand folders.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".heic", ".heif"}
)
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
#: Photos whose shorter side is below this many pixels are rejected.
MIN_SIDE = 32

_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}


def _enable_heif(name: str) -> None:
    """Register the optional HEIC/HEIF opener with Pillow, or explain how to get it."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        raise ImageLoadError(
            f"{name}: HEIC/HEIF photos need the optional package pillow-heif "
            "(pip install pillow-heif), or convert the photo to JPEG or PNG"
        ) from None
    pillow_heif.register_heif_opener()  # idempotent


def _scale_to_uint8(values: np.ndarray, *, full_scale: float) -> np.ndarray:
    """Scale ``values`` (0..full_scale) to uint8 with rounding, or min-max when out of range."""
    values = values.astype(np.float64)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if lo < 0 or hi > full_scale:
        # Not a standard range (signed or float data): stretch what is there.
        span = hi - lo if hi > lo else 1.0
        values = (values - lo) / span
    else:
        values = values / full_scale
    values = np.nan_to_num(values, nan=0.0)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def image_to_uint8_rgb(im: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an ``(H, W, 3)`` uint8 RGB array.

    Parameters
    ----------
    im : PIL.Image.Image
        A loaded image (EXIF orientation already applied if wanted).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, C-contiguous.

    Notes
    -----
    * 16-bit modes (``I;16*``) are scaled by 255/65535 with rounding, not clipped.
    * Mode ``I`` (32-bit integer, how Pillow reads some 16-bit PNGs) is taken as 0..65535 when
      its values lie in that range, else stretched from its minimum to its maximum.
    * Mode ``F`` (32-bit float) is taken as 0..1 when its values lie in that range, else stretched.
    * Transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is composited on
      white.
    * ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and 1-bit images use Pillow's conversions.
    """
    mode = im.mode
    if mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(im), full_scale=65535.0)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "I":
        gray = _scale_to_uint8(np.asarray(im), full_scale=65535.0)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        gray = _scale_to_uint8(np.asarray(im), full_scale=1.0)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.ascontiguousarray(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def load_image(path: str | os.PathLike[str], *, max_pixels: int = 100_000_000) -> np.ndarray:
    """Read a photo as an 8-bit RGB array, upright as its EXIF orientation says.

    Parameters
    ----------
    path : str or os.PathLike
        Photo file: JPEG, PNG, TIFF, BMP, WebP, GIF (first frame), or HEIC/HEIF when
        ``pillow-heif`` is installed.
    max_pixels : int, optional
        Largest accepted width x height (default 100 million), a guard against decompression
        bombs. Checked from the header, before any pixel is decoded.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, 0..255, C-contiguous, EXIF orientation applied.

    Raises
    ------
    ImageLoadError
        One line ``"<file>: <reason>"`` when the file is missing, a folder, not an image,
        truncated, too large, smaller than 32 px on a side, or needs a missing optional package.
    ValueError
        If ``max_pixels`` is not positive.

    Notes
    -----
    See :func:`image_to_uint8_rgb` for how modes and bit depths are converted.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise ImageLoadError(f"{name}: file not found")
    if p.is_dir():
        raise ImageLoadError(f"{name}: is a folder, not an image file")
    return _decode(p, name, max_pixels=max_pixels)


def load_image_bytes(data: bytes, *, name: str, max_pixels: int = 100_000_000) -> np.ndarray:
    """:func:`load_image` of a photo's bytes already in memory (``name`` only for messages and the format).

    Hashing and decoding the same bytes is how a study knows that the copy it stores is the
    photo it scored: reading the file twice could see two different files.

    Raises
    ------
    ImageLoadError
        As :func:`load_image`.
    """
    import io as _io

    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    return _decode(_io.BytesIO(data), name, max_pixels=max_pixels)


def _decode(source: Any, name: str, *, max_pixels: int) -> np.ndarray:
    """Decode an image file or file object into upright 8-bit RGB (see :func:`load_image`)."""
    if Path(name).suffix.lower() in _HEIF_SUFFIXES:
        _enable_heif(name)
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit below; Pillow's global one only warns up to 2x.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageLoadError(
                        f"{name}: image is {width} x {height} = {width * height:,} pixels, above "
                        f"the limit of {max_pixels:,} (possible decompression bomb); "
                        "downscale it or raise max_pixels"
                    )
                if min(width, height) < MIN_SIDE:
                    raise ImageLoadError(
                        f"{name}: image is only {width} x {height} pixels; "
                        f"at least {MIN_SIDE} px on each side are needed to find a face"
                    )
                im.load()
                try:
                    upright = ImageOps.exif_transpose(im)
                except Exception as exc:  # noqa: BLE001 - broken EXIF must not lose the photo
                    logger.warning("%s: could not apply EXIF orientation (%s); using pixels as stored", name, exc)
                    upright = im
                array = image_to_uint8_rgb(upright if upright is not None else im)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{name}: not an image file, or a format Pillow cannot read (use JPEG, PNG, TIFF, BMP or WebP)"
        ) from None
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageLoadError(f"{name}: file is truncated or corrupt ({reason})") from None
    except MemoryError:
        raise ImageLoadError(f"{name}: not enough memory to decode this image") from None
    h, w = array.shape[:2]
    if min(h, w) < MIN_SIDE:  # can only happen for odd formats whose header lied
        raise ImageLoadError(f"{name}: image is only {w} x {h} pixels; at least {MIN_SIDE} px needed")
    return array


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an image; the format follows the suffix (PNG, JPEG, TIFF, BMP, WebP).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its folder is created if missing. JPEG is written at quality 95.
    image : numpy.ndarray
        ``(H, W, 3)`` or ``(H, W)`` uint8 0..255, or float in 0..1 (scaled by 255 and rounded),
        or bool (``True`` = white).

    Raises
    ------
    ValueError
        If the shape, dtype, value range or suffix is not supported.
    """
    p = Path(path)
    fmt = _SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from {p.name!r}; use one of {sorted(_SAVE_FORMATS)}")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
            raise ValueError(
                "float images must lie in 0..1 (got "
                f"{np.nanmin(arr):.4g}..{np.nanmax(arr):.4g}); scale them or pass uint8"
            )
        arr = np.rint(arr * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 0..255 or float 0..1, got dtype {arr.dtype}")
    p.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(arr))
    kwargs: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    im.save(p, format=fmt, **kwargs)


# ----------------------------------------------------------------------------- files


def find_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder``, sub-folders included, in a stable sorted order.

    Hidden files and folders (names starting with ``.``) are skipped; so are symbolic links to
    folders, which could loop.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to search.

    Returns
    -------
    list of Path
        Files whose suffix is in :data:`IMAGE_SUFFIXES`, sorted by their path relative to
        ``folder`` (case-blind), so ``patient1/a.jpg`` comes before ``patient2/a.jpg``.
    """
    root = Path(folder)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    # Case-blind first, then exact: names differing only in case keep one order on every run.
    return sorted(
        found, key=lambda p: ([part.lower() for part in p.relative_to(root).parts], p.relative_to(root).parts)
    )


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` under a temporary name beside ``path``, then rename it into place.

    A reader sees the old file or the new one, never a part; an interrupted write leaves a
    ``.tmp`` file that the next write replaces.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Hard-link ``src`` as ``dst`` (no bytes copied), or copy it where links are not allowed.

    Safe because cleftscore never rewrites a file in place: every write makes a new file and
    renames it, so a linked file never changes under its other name.
    """
    import shutil

    d = Path(dst)
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, d)
    except OSError:
        shutil.copy2(src, d)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def replace_folder(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the finished folder ``staging`` in the place of ``target`` (which may not exist).

    On Linux the two are swapped in one atomic step, so ``target`` is always either the whole
    old folder or the whole new one. Elsewhere the old folder is first renamed to
    ``.old-<name>-<pid>`` beside it; :func:`restore_replaced_folders` puts it back when a crash
    hit between the two renames.
    """
    import shutil

    new, old = Path(staging), Path(target)
    if not old.exists():
        os.replace(new, old)
        return
    if _exchange(new, old):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    aside = old.with_name(f".old-{old.name}-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(old, aside)
    os.replace(new, old)
    shutil.rmtree(aside, ignore_errors=True)


def restore_replaced_folders(parent: str | os.PathLike[str]) -> None:
    """Undo what an interrupted :func:`replace_folder` left in ``parent``.

    A ``.old-<name>-<pid>`` folder whose ``<name>`` is missing goes back in place; any other
    ``.old-*`` and every unfinished ``.new-*`` staging folder is removed. Only call this while
    holding the folder's lock (no other run is writing there).
    """
    import shutil

    root = Path(parent)
    if not root.is_dir():
        return
    for item in sorted(root.iterdir()):
        name = item.name
        if name.startswith(".old-") and item.is_dir():
            original = root / name[len(".old-") :].rsplit("-", 1)[0]
            if not original.exists():
                os.replace(item, original)
            else:
                shutil.rmtree(item, ignore_errors=True)
        elif name.startswith(".new-") and item.is_dir():
            shutil.rmtree(item, ignore_errors=True)


def write_png(path: str | os.PathLike, image: np.ndarray, *, compress_level: int = 1) -> Path:
    """Write a uint8 image as PNG (parent folders are created), lossless.

    Parameters
    ----------
    path : path-like
        Destination file.
    image : (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) ndarray of uint8
    compress_level : int
        zlib level 0..9 (default 1).

    Returns
    -------
    Path
        The written path.

    Notes
    -----
    Encoded by libpng through OpenCV with every row filtered by the "sub" predictor and zlib's
    run-length strategy: about twice as fast as Pillow's adaptive filters at the same level, for
    files about 5 % larger (measured on a scored photo's six pictures, docs/asymmetry_score.md).
    The pixels read back are the same either way.
    """
    import cv2

    from cleftscore.io import atomic_write_bytes

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(f"write_png needs a uint8 (H, W), (H, W, 3) or (H, W, 4) image, got {img.shape} {img.dtype}")
    if not 0 <= int(compress_level) <= 9:
        raise ValueError(f"compress_level must be 0..9, got {compress_level}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level), cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10; older ones keep libpng's adaptive filters
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(img), params)
    if not ok:
        raise ValueError(f"could not encode a {img.shape} image as PNG")
    return atomic_write_bytes(path, data.tobytes())


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (UTF-8, indented); NumPy types converted, NaN/inf written as null.

    Parameters
    ----------
    path : path-like
        Destination file (parent folders are created).
    data : any
        Dicts, lists, dataclasses, NumPy scalars/arrays, paths; other objects become ``str``.

    Returns
    -------
    Path
        The written path.
    """
    from cleftscore.io import atomic_write_bytes

    text = json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    # Write then rename, so an interrupted run never leaves a truncated record; text that
    # cannot be encoded (a file name in a foreign encoding) is escaped, not fatal.
    return atomic_write_bytes(path, (text + "\n").encode("utf-8", errors="backslashreplace"))


# ----------------------------------------------------------------------------- process locks


class ProcessLock:
    """An advisory lock on a file that names the process holding it (a run folder, a study's server).

    The operating system drops the lock when its process ends, even by SIGKILL, so a crash never
    leaves it taken. The file is created (with its folder) on :meth:`acquire`.

    Examples
    --------
    >>> lock = ProcessLock(folder / ".lock")   # doctest: +SKIP
    >>> holder = lock.acquire()                # None: taken; else the holder's process id
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: Any = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, *, write_pid: bool = True) -> str | None:
        """Take the lock without waiting: None when taken, else the holder's process id (or "unknown").

        ``write_pid=False`` takes it only to learn that nobody holds it, leaving the file as it was.

        Raises
        ------
        OSError
            The file or its folder cannot be created.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the lock is
        try:
            _lock_file(fh)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            return holder
        if write_pid:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        self._fh = fh
        return None

    def release(self, *, clear: bool = True) -> None:
        """Drop the lock (the process id is cleared from the file unless ``clear`` is False)."""
        if self._fh is None:
            return
        if clear:
            with contextlib.suppress(OSError):
                self._fh.seek(0)
                self._fh.truncate()
        _unlock_file(self._fh)
        self._fh.close()
        self._fh = None


def _lock_file(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock_file(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        with contextlib.suppress(OSError):
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
