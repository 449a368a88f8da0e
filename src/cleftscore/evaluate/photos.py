"""The scored photos of a run folder, as the evaluation needs them, and their mirror image.

Run folders are read only through :mod:`cleftscore.run.folder` (its record reader and folder
layout); the asymmetry normalizer's face is made again through :mod:`cleftscore.normalize`, the
same door ``cleftscore score --method asymmetry`` goes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cleftscore.errors import CleftscoreError

__all__ = ["RunContents", "RunPhoto", "mirror_reference", "read_run", "resolve_mask"]


@dataclass(frozen=True, eq=False)
class RunPhoto:
    """One scored photo of a run folder: where its pictures are and what the grid needs of its record.

    Attributes
    ----------
    name : str
        The original file as recorded by the run.
    photo_id : str
        Its folder name under ``photos/``.
    folder : Path
        That folder.
    method : str
        The normalizer that scored it (``gan`` for records that do not say).
    landmarks : (68, 2) ndarray of float64
        Landmarks in the aligned frame of side ``size``.
    size : int
        Side of the aligned face the landmarks belong to.
    mask_file : str or None
        The user mask the run was scored with.
    measures : dict of str to float
        The record's other measures (name -> value).
    face_referenced : bool
        The record's score is the face-referenced asymmetry score.
    """

    name: str
    photo_id: str
    folder: Path
    method: str
    landmarks: np.ndarray
    size: int
    mask_file: str | None
    measures: Mapping[str, float] = field(default_factory=dict)
    face_referenced: bool = False


@dataclass(frozen=True)
class RunContents:
    """The photos of a run's latest score or rescore: those with a face, and the failed ones.

    Attributes
    ----------
    photos : tuple of RunPhoto
        Scored photos with a face geometry and an aligned picture.
    failed : tuple of (str, str)
        ``(file, message)`` of every other photo.
    """

    photos: tuple[RunPhoto, ...]
    failed: tuple[tuple[str, str], ...]


def read_run(run_dir: Path) -> RunContents:
    """Every photo record of a run folder (those of its latest score or rescore).

    Parameters
    ----------
    run_dir : Path
        Folder written by ``cleftscore score``.

    Returns
    -------
    RunContents

    Raises
    ------
    CleftscoreError
        The folder is missing or is not a run folder.
    """
    from cleftscore.run.folder import is_run_folder, list_photo_ids, photo_dir, read_records, read_run_settings

    if not run_dir.is_dir():
        raise CleftscoreError(f"{run_dir}: run folder not found; run `cleftscore score ... --out {run_dir}` first")
    _, latest = read_run_settings(run_dir)
    ids = latest if latest is not None else list_photo_ids(run_dir)
    if not is_run_folder(run_dir) or not ids:
        raise CleftscoreError(
            f"{run_dir}: not a cleftscore run folder (no photos/*/result.json); "
            "evaluate the folder written by `cleftscore score --out DIR`"
        )
    failed: list[tuple[str, str]] = []
    photos: list[RunPhoto] = []
    for rec in read_records(run_dir, ids):
        folder = photo_dir(run_dir, rec.photo_id)
        if not rec.ok:
            failed.append((rec.file, rec.message))
        elif rec.geometry is None or "aligned.png" not in rec.pictures:
            failed.append((rec.file, f"{folder}: the record has no face geometry or aligned picture"))
        else:
            score_settings = rec.settings.get("score") or {}
            photos.append(
                RunPhoto(
                    name=rec.file,
                    photo_id=rec.photo_id,
                    folder=folder,
                    method=rec.method or "gan",
                    landmarks=rec.geometry.landmarks_aligned,
                    size=rec.geometry.size,
                    mask_file=score_settings.get("mask_file") or None,
                    measures={k: m.value for k, m in rec.measures.items()},
                    face_referenced=rec.method == "asymmetry"
                    and score_settings.get("asymmetry_score") == "face-referenced",
                )
            )
    return RunContents(photos=tuple(photos), failed=tuple(failed))


def resolve_mask(photo: RunPhoto, run_dir: Path) -> Path | None:
    """The photo's user mask file: as written, under the run folder or the photo's folder; None if absent."""
    if photo.mask_file is None:
        return None
    raw = Path(photo.mask_file)
    return next((cand for cand in (raw, run_dir / raw, photo.folder / raw) if cand.is_file()), None)


def mirror_reference(aligned: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The asymmetry normalizer's face for an aligned face (frontal check included).

    Parameters
    ----------
    aligned : (S, S, 3) ndarray of uint8
        The aligned face (``aligned.png``).
    landmarks : (68, 2) ndarray of float
        Its landmarks in the same frame.

    Returns
    -------
    (S, S, 3) ndarray of uint8
        The registered mirror image.

    Raises
    ------
    CleftscoreError
        The normalizer refuses the face (turned too far, registration failed); the message says why.
    """
    from cleftscore.face.align import AlignedFace
    from cleftscore.normalize import make_normalizer

    size = aligned.shape[0]
    face = AlignedFace(image=aligned, size=size, landmarks=landmarks, landmarks_original=landmarks,
                       to_original=np.eye(3), original_shape=(size, size))  # fmt: skip
    (norm,) = make_normalizer("asymmetry").normalize([face])
    if norm.image is None:
        raise CleftscoreError(norm.error)
    return norm.image
