"""What one photo's folder holds: its pictures, drawn from its arrays, and the folder written whole."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.run.folder import write_photo
from cleftscore.run.record import PICTURES, SNAPSHOTS_DIR, PhotoRecord, failure_text

if TYPE_CHECKING:
    from cleftscore.run.photo import PhotoWork, ScoredFace

__all__ = ["all_pictures", "score_pictures", "write_photo_folder"]

log = logging.getLogger(__name__)


def score_pictures(scored: ScoredFace, aligned: np.ndarray, normalized: np.ndarray, *, inverted: np.ndarray | None,
                   original: np.ndarray | None, aligned_face: Any) -> dict[str, np.ndarray | bytes]:  # fmt: skip
    """The pictures that depend on the score (see :func:`cleftscore.report.pictures.score_pictures`)."""
    from cleftscore.report.pictures import score_pictures as draw

    return draw(aligned, normalized, scored.score.heatmap, mask=scored.region, score=scored.score.score,
                inverted=inverted, original=original, aligned_face=aligned_face, vmax=scored.heatmap_max,
                units=scored.heatmap_units, display=scored.display, display_units=scored.display_units,
                save_values=True)  # fmt: skip


def all_pictures(work: PhotoWork, scored: ScoredFace) -> dict[str, np.ndarray | bytes | Path]:
    """Every picture of a freshly scored photo, by file name in its folder."""
    prepared, norm = work.prepared, work.norm
    assert prepared is not None and norm is not None and norm.image is not None
    files: dict[str, np.ndarray | bytes | Path] = {"aligned.png": prepared.aligned.image, "normalized.png": norm.image}
    if norm.inverted is not None:
        files["inverted.png"] = norm.inverted
    for step, img in sorted(norm.snapshots.items()):
        files[f"{SNAPSHOTS_DIR}/step_{step:04d}.png"] = img
    files.update(score_pictures(scored, prepared.aligned.image, norm.image, inverted=norm.inverted,
                                original=prepared.original, aligned_face=prepared.aligned))  # fmt: skip
    files.update(_dynamics_pictures(norm.info, norm.snapshots, files.get("panel.png")))
    from cleftscore.report.measures_picture import measures_pictures

    files.update(measures_pictures(prepared))
    return files


def _dynamics_pictures(
    info: Mapping[str, Any], snapshots: Mapping[int, np.ndarray], panel: Any
) -> dict[str, np.ndarray]:
    """With adaptation dynamics: the curve (also joined to the panel) and the reappearance strip."""
    dyn = info.get("dynamics")
    if not isinstance(dyn, dict) or len(dyn.get("curve") or ()) < 2 or not dyn["curve"][0] > 0:
        return {}
    from PIL import Image

    from cleftscore.report.dynamics import curve_figure, reappearance_strip

    curve = curve_figure(np.asarray(dyn["curve"]), fraction=dyn["fraction"], reappearance_step=dyn["reappearance_step"],
                         reached=dyn["reached"], adapt_steps=dyn.get("adapt_steps", 0))  # fmt: skip
    out: dict[str, np.ndarray] = {"dynamics_curve.png": curve}
    if snapshots:
        out["reappearance_strip.png"] = reappearance_strip(dict(snapshots))
    if isinstance(panel, np.ndarray):
        h = panel.shape[0]
        small = np.asarray(
            Image.fromarray(curve).resize((round(curve.shape[1] * h / curve.shape[0]), h), Image.Resampling.LANCZOS)
        )
        out["panel.png"] = np.concatenate([panel, np.full((h, 4, 3), 255, np.uint8), small], axis=1)
    return out


def _picture_order(names: Sequence[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(PICTURES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def write_photo_folder(
    out: Path, record: PhotoRecord, files: Mapping[str, Any], *, keep_old: bool = False
) -> PhotoRecord:
    """Write the photo's fresh folder: its record, listing ``files``, and the files.

    If its pictures cannot be written, the photo fails and gets its failed record alone, or
    (``keep_old``, for a rescore) keeps its old folder, whose record and pictures still match.

    Returns
    -------
    PhotoRecord
        The record as written (or, with ``keep_old``, as it failed).
    """
    files = files if record.ok else {}
    try:
        written = record.replace(pictures=tuple(_picture_order(list(files))))
        write_photo(out, written, files)
        return written
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        failed = record.failed(failure_text(record.file, exc, stage="writing its outputs"))
        from cleftscore.errors import environment_problem

        if environment_problem(exc) is not None and (out / "photos" / record.photo_id).is_dir():
            keep_old = True  # a full disk says nothing about the photo: its previous, complete result stays
    if not keep_old:
        try:
            write_photo(out, failed, {})
        except Exception:  # noqa: BLE001 - e.g. the disk is full; the message still shows
            log.warning("could not write the record of %s", record.file)
    return failed
