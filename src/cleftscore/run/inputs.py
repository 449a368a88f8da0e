"""The photos of a run: files and folders in, each photo with its unique, folder-safe id."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cleftscore.errors import CleftscoreError
from cleftscore.io import IMAGE_SUFFIXES as _IO_SUFFIXES
from cleftscore.io import find_images

__all__ = ["IMAGE_SUFFIXES", "InputPhoto", "expand_inputs", "find_inputs", "id_key", "photo_ids"]

IMAGE_SUFFIXES = tuple(sorted(_IO_SUFFIXES))


@dataclass(frozen=True)
class InputPhoto:
    """One photo to score and its photo id (folder name in the run)."""

    path: Path
    photo_id: str


#: Longest id kept from a name (characters); folder names must stay under 255 bytes.
_MAX_ID = 80


def _safe_id(text: str) -> str:
    # NFC first: macOS hands out names decomposed (NFD), Linux keeps what it was given, and the
    # same photo must get the same id on either.
    text = unicodedata.normalize("NFC", text)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).lstrip(".")[:_MAX_ID] or "photo"


def id_key(photo_id: str) -> str:
    """What two ids are compared by: case and Unicode normalization folded, as macOS and Windows folders do."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", photo_id).casefold())


def _unique(stems: Sequence[str]) -> list[str]:
    """``stem`` for the first photo of a stem, then ``stem-2``, ``stem-3``... skipping ids already taken.

    Ids are compared by :func:`id_key` (case-blind, Unicode-normalized), so ``a-2, a, a`` gives
    ``a-2, a, a-3``: a numbered id never lands on one that an earlier photo has, and two ids
    never name the same folder on any file system.
    """
    taken: set[str] = set()
    ids = []
    for stem in stems:
        candidate, n = stem, 1
        while id_key(candidate) in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add(id_key(candidate))
        ids.append(candidate)
    return ids


def photo_ids(paths: Sequence[str | Path]) -> list[str]:
    """Folder-safe unique ids from file stems (``name``, ``name-2``, ...)."""
    return _unique([_safe_id(Path(p).stem) for p in paths])


def find_inputs(inputs: Sequence[str | Path], *, require_images: bool = True) -> list[InputPhoto]:
    """Photos to score: files as given, folders searched recursively, each with its photo id.

    A photo found in a sub-folder keeps the sub-folder in its id (``patient1__front`` for
    ``photos/patient1/front.jpg`` given as ``photos``), so photos of different patients with
    the same file name stay apart. A folder with no image file anywhere inside stays in the
    list, and fails on its own row with a message saying so.

    Raises
    ------
    CleftscoreError
        With ``require_images``, when no input holds a usable file at all (every input a
        folder without images).
    """
    found: list[tuple[Path, str]] = []
    empty: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images = find_images(p)
            if not images:
                empty.append(p)
                found.append((p, _safe_id(p.name)))
            for img in images:
                rel = img.relative_to(p).with_suffix("")
                found.append((img, "__".join(_safe_id(part) for part in rel.parts)))
        else:
            # Missing files are reported per photo by the loader, so a batch goes on.
            found.append((p, _safe_id(p.stem)))
    if require_images and found and len(empty) == len(found):
        raise CleftscoreError(
            f"no image files found in {', '.join(map(str, empty))} or its sub-folders "
            f"(looked for {', '.join(IMAGE_SUFFIXES)}); point to the folder that holds the photos"
        )
    ids = _unique([stem for _, stem in found])
    return [InputPhoto(path=p, photo_id=pid) for (p, _), pid in zip(found, ids, strict=True)]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their image files (sub-folders too, sorted); keep files as given.

    A folder without images stays in the list (it fails on its own row).
    """
    return [i.path for i in find_inputs(inputs, require_images=False)]
