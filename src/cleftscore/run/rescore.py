"""A finished run scored again with other scoring settings (``cleftscore rescore``); no normalizer runs."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError, WeightsMissingError
from cleftscore.run.folder import (
    RunLock,
    list_photo_ids,
    photo_dir,
    read_record,
    read_records,
    settings_differences,
    write_run_settings,
    write_summary,
)
from cleftscore.run.outputs import score_pictures, write_photo_folder
from cleftscore.run.parallel import process_pool
from cleftscore.run.photo import region_mask, score_face
from cleftscore.run.record import SNAPSHOTS_DIR, FaceGeometry, PhotoRecord, PhotoResult, failure_text
from cleftscore.run.settings import ProgressHooks
from cleftscore.score.paper import ScoreSettings

__all__ = ["rescore_run"]

#: Pictures a rescore keeps (hard-linked into the fresh folder): those made before the score.
# measures.png: the nasolabial measures come from the landmarks, which a re-score keeps.
_KEPT = ("aligned.png", "normalized.png", "inverted.png", "measures.png")


def _aligned_face(geometry: FaceGeometry, image: np.ndarray) -> Any:
    from cleftscore.face.align import AlignedFace

    return AlignedFace(
        image=image,
        size=int(image.shape[0]),
        landmarks=geometry.landmarks_aligned * (image.shape[0] / geometry.size),
        landmarks_original=geometry.landmarks_original,
        to_original=geometry.to_original,
        original_shape=geometry.original_shape,
    )


def _kept_pictures(folder: Path, rec: PhotoRecord) -> dict[str, Path]:
    kept = {name: folder / name for name in rec.pictures
            if (name in _KEPT or name.startswith(SNAPSHOTS_DIR + "/")) and (folder / name).is_file()}  # fmt: skip
    for snap in sorted((folder / SNAPSHOTS_DIR).glob("*.png")):  # listed by version-2 records; found for older ones
        kept.setdefault(f"{SNAPSHOTS_DIR}/{snap.name}", snap)
    return kept


def _rescore_one(
    run: Path, rec: PhotoRecord, score_settings: ScoreSettings, new_settings: dict[str, Any], lpips_distance: Any
) -> PhotoResult:
    """Score one recorded photo again; writes its fresh folder (pictures that did not change are linked)."""
    from cleftscore.io import load_image
    from cleftscore.score.reference import reference_for

    folder = photo_dir(run, rec.photo_id)
    kept = _kept_pictures(folder, rec)
    normalization_measures = {k: m for k, m in rec.measures.items() if m.stage == "normalization"}
    base = rec.replace(settings=new_settings, cached=True, calibration=None, measures=normalization_measures)
    try:
        if rec.geometry is None:
            raise CleftscoreError(f"{folder / 'result.json'}: the record has no face geometry; score the photo again")
        if "aligned.png" not in kept or "normalized.png" not in kept:
            raise CleftscoreError(f"{folder}: aligned.png or normalized.png is missing; score the photo again")
        aligned, normalized = load_image(kept["aligned.png"]), load_image(kept["normalized.png"])
        inverted = load_image(kept["inverted.png"]) if "inverted.png" in kept else None
        face = _aligned_face(rec.geometry, aligned)
        mask = region_mask(face.landmarks, face.size, score_settings)
        moved = rec.measures.get("landmarks_moved_points")  # scored on them as given, as when first scored
        kind = "face-referenced" if score_settings.face_referenced(rec.method) else "paper"
        ref = reference_for(rec.method, kind, new_settings.get("reference"))
        scored = score_face(aligned, normalized, mask, face.landmarks, method=rec.method, settings=score_settings,
                            lpips_distance=lpips_distance, reference=ref,
                            hand_corrected=moved is not None and moved.value > 0)  # fmt: skip
        try:
            original = load_image(rec.file)
        except CleftscoreError:
            original = None  # the original photo moved: no overlay on it
        files = {**kept, **score_pictures(scored, aligned, normalized, inverted=inverted, original=original,
                                          aligned_face=face)}  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        # The old folder stays as it was: its pictures and record still belong together.
        return PhotoResult.of(base.failed(failure_text(rec.file, exc, stage="scoring")))
    record = base.replace(score=scored.score.score, score_definition=scored.definition, heatmap_max=scored.heatmap_max,
                          measures={**normalization_measures, **scored.measures})  # fmt: skip
    return PhotoResult.of(write_photo_folder(run, record, files, keep_old=True))


def _rescore_photo(run: Path, pid: str, score_settings: ScoreSettings, wanted: dict[str, Any],
                   lpips_distance: Any, reference: str | None = None) -> PhotoResult:  # fmt: skip
    rec = read_record(run, pid)
    placed_again = reference is not None and rec.settings.get("reference") != reference
    if not rec.ok or not (placed_again or settings_differences(rec.settings, wanted)):
        return PhotoResult.of(rec)  # failed, unreadable, or already up to date
    new_settings = {**rec.settings, "score": wanted["score"]}
    if reference is not None:
        new_settings["reference"] = reference
    return _rescore_one(run, rec, score_settings, new_settings, lpips_distance)


def _pool(workers: int | None, lpips_distance: Any) -> tuple[Executor, int]:
    """The executor of a rescore and how many photos it works on at a time."""
    if lpips_distance is not None or workers == 1:
        n = 1  # LPIPS maps stay on one thread (one model on one device)
    elif workers is None:
        n = min(2, os.cpu_count() or 1)  # image encoding and most array work release the GIL
    else:
        return process_pool(workers), workers
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="cleftscore-rescore"), n


def rescore_run(
    run_dir: str | Path,
    score_settings: ScoreSettings,
    *,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    hooks: ProgressHooks | None = None,
    workers: int | None = None,
    reference: str | None = None,
) -> list[PhotoResult]:
    """Recompute heat maps and scores of a finished run with other scoring settings.

    Reads each photo's ``result.json``, ``aligned.png`` and ``normalized.png``; the normalizer
    is not run. Each re-scored photo gets a fresh folder (its unchanged pictures hard-linked,
    nothing rewritten in place), so an interrupted rescore leaves every photo with a record
    and pictures that belong together. Photos already scored with these settings are kept as
    they are. Unreadable records and failed photos are kept too and reported as failed.
    ``scores.csv`` and ``report.html`` are rewritten, also when interrupted.

    Parameters
    ----------
    run_dir : path
        The run folder.
    score_settings : ScoreSettings
        The scoring settings to apply.
    lpips_distance : callable, optional
        Spatial LPIPS for ``metric="lpips"`` heat maps (then one photo at a time).
    hooks : ProgressHooks, optional
        ``photo_done`` per photo, in photo-id order; ``message`` for a summary that failed.
    workers : int, optional
        Processes that score photos side by side; None (default) scores two at a time on
        threads of this process, 1 one at a time.
    reference : str, optional
        A normative reference JSON (``cleftscore reference build``) to place the scores against;
        every photo is then placed again. Default: the one each photo was scored with (its
        ``settings["reference"]``), else the shipped one where it fits.

    Returns
    -------
    list of PhotoResult
        One per photo folder (sorted by photo id): the fresh record, or the record kept.

    Raises
    ------
    CleftscoreError
        Not a run folder, no photos in it, LPIPS without weights, or the folder in use.
    """
    hooks = hooks or ProgressHooks()
    run = Path(run_dir)
    if not (run / "photos").is_dir():
        raise CleftscoreError(f"{run}: not a cleftscore run folder (no photos/ inside); run `cleftscore score` first")
    if score_settings.difference.metric == "lpips" and lpips_distance is None:
        raise WeightsMissingError(
            "metric 'lpips' needs VGG16 weights: pass --vgg16 PATH (see `cleftscore weights fetch vgg16`)"
        )
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    wanted = {"score": dataclasses.asdict(score_settings)}
    with RunLock(run):
        ids = list_photo_ids(run)
        if not ids:
            raise CleftscoreError(f"{run}: no photo results found under photos/")
        write_run_settings(run, wanted, ids)
        results: list[PhotoResult] = []
        pool, ahead = _pool(workers, lpips_distance)
        args = (score_settings, wanted, lpips_distance, reference)
        try:
            # Never more photos under way than workers, so an interrupt leaves little to finish.
            queue = iter(ids)
            under_way = [pool.submit(_rescore_photo, run, pid, *args) for pid in itertools.islice(queue, ahead)]
            while under_way:
                res = under_way.pop(0).result()
                under_way.extend(pool.submit(_rescore_photo, run, pid, *args) for pid in itertools.islice(queue, 1))
                results.append(res)
                hooks.done(res)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a photo under way is finished whole
            try:
                write_summary(run, read_records(run, ids), settings=wanted)
            except OSError as exc:
                hooks.say(f"could not write the summary of {run}: {exc}")
    return results
