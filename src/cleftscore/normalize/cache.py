"""On-disk cache of GAN normalizations, checked on every read.

An entry is a folder ``<root>/<key[:2]>/<key>/`` with the normalized and inverted faces, the
adaptation snapshots, ``w.npy`` and ``meta.json``. ``meta.json`` is written last and lists the
sha256 and shape of every picture's pixels; an entry whose pictures do not match (replaced by
another image, cut short, wrong size) is reported once, ignored and recomputed. Entries are
built under a temporary name and put in place in one step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError

__all__ = ["CacheEntry", "NormalizationCache", "pixel_digest"]

log = logging.getLogger(__name__)
META = "meta.json"


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of an image's pixels and shape (what a cache entry promises to give back)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class CacheEntry:
    """One stored normalization: pictures (S, S, 3) uint8, latent ``w`` and how it ran."""

    normalized: np.ndarray
    inverted: np.ndarray
    snapshots: Mapping[int, np.ndarray] = field(default_factory=dict)
    w: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


class NormalizationCache:
    """Read and write :class:`CacheEntry` folders under ``root``.

    Parameters
    ----------
    root : path
        Cache folder.
    message : callable, optional
        Told (once per entry) when an entry is damaged and will be recomputed.
    """

    def __init__(self, root: str | os.PathLike[str], *, message: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self._message = message or log.warning
        self._reported: set[str] = set()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _damaged(self, key: str, why: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self._message(f"cache entry {self.path(key)} is damaged ({why}); it is ignored and recomputed")

    def load(self, key: str) -> CacheEntry | None:
        """The entry of ``key``, or None when there is none or it does not check out."""
        from cleftscore.io import load_image

        d = self.path(key)
        if not (d / META).is_file():
            return None
        try:
            meta = json.loads((d / META).read_text(encoding="utf-8"))
            files = meta["files"]
            pictures = {name: load_image(d / name) for name in files}
        except KeyError:
            self._damaged(key, "written by an older cleftscore without checksums")
            return None
        except (OSError, ValueError, TypeError, CleftscoreError) as exc:
            self._damaged(key, " ".join(str(exc).split()))
            return None
        for name, image in pictures.items():
            want = files[name]
            if list(image.shape) != list(want.get("shape", [])):
                self._damaged(key, f"{name} is {tuple(image.shape)}, the entry recorded {tuple(want.get('shape', []))}")
                return None
            if pixel_digest(image) != want.get("sha256"):
                self._damaged(key, f"{name} does not match its recorded checksum")
                return None
        if "normalized.png" not in pictures or "inverted.png" not in pictures:
            self._damaged(key, "normalized.png or inverted.png is not listed")
            return None
        snapshots = {
            int(n.split("_")[1].split(".")[0]): img for n, img in pictures.items() if n.startswith("snapshot_")
        }
        return CacheEntry(
            normalized=pictures["normalized.png"],
            inverted=pictures["inverted.png"],
            snapshots=snapshots,
            meta={k: v for k, v in meta.items() if k != "files"},
        )

    def store(self, key: str, entry: CacheEntry) -> None:
        """Write ``entry`` under ``key``, replacing any old one in one step.

        Raises
        ------
        OSError
            When the cache cannot be written (full disk, no permission).
        """
        from cleftscore.io import replace_folder, write_json, write_png

        target = self.path(key)
        staging = target.with_name(f".new-{key}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            pictures = {"normalized.png": entry.normalized, "inverted.png": entry.inverted}
            pictures.update({f"snapshot_{step:05d}.png": img for step, img in entry.snapshots.items()})
            files = {}
            for name, image in pictures.items():
                write_png(staging / name, image)
                files[name] = {"sha256": pixel_digest(image), "shape": list(image.shape)}
            if entry.w is not None:
                np.save(staging / "w.npy", entry.w)
            write_json(staging / META, {**entry.meta, "files": files})
            replace_folder(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._reported.discard(key)
