"""One photo through the stages: aligned, normalized, scored, and its record built once.

:class:`PhotoWork` is the working state of a photo between its stages (the prepared face, its
region mask, the normalization, the timings); it is never returned. :func:`finish_photo` scores
it, draws and writes its folder, and builds its :class:`~cleftscore.run.record.PhotoRecord`
from the score stage's :class:`~cleftscore.score.paper.PhotoScore` and the normalization.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.face.landmarks import LandmarkEdit
from cleftscore.face.prepare import PreparedPhoto, prepare_photo
from cleftscore.face.quality import PhotoQuality, assess_quality, quality_measures
from cleftscore.face.roi import load_user_mask, roi_mask
from cleftscore.normalize import Measure, Normalization, Normalizer
from cleftscore.run.inputs import InputPhoto
from cleftscore.run.outputs import all_pictures, write_photo_folder
from cleftscore.run.record import FaceGeometry, PhotoRecord, PhotoResult, failure_text
from cleftscore.run.settings import PipelineSettings
from cleftscore.score.paper import PhotoScore, ScoreSettings, score_photo

__all__ = ["PhotoWork", "RunContext", "ScoredFace", "align_photo", "finish_photo", "landmark_measures", "lost_photo",
           "photo_quality", "region_mask", "score_face", "score_one_photo"]  # fmt: skip


@dataclass(frozen=True, eq=False)
class RunContext:
    """What every photo of a run shares: settings, where it goes, and what is kept.

    Attributes
    ----------
    settings : PipelineSettings
    size : int
        Side of the aligned face in pixels (resolved: the generator's, or the asymmetry default).
    environment : dict
        Versions and the normalizer's description, for every record.
    out : Path or None
        The run folder; None writes nothing.
    keep : bool
        Return each photo's arrays in its :class:`PhotoResult`.
    lpips_distance : callable or None
        Spatial LPIPS for ``metric="lpips"`` heat maps.
    reference : NormativeReference or None
        What every score is placed against (``settings.reference``, or the shipped one where it
        fits); read once, when the context is made.
    edits : dict of str -> LandmarkEdit
        Landmarks corrected by hand, by photo id: those photos are aligned, normalized, scored
        and measured on the corrected points.
    """

    settings: PipelineSettings
    size: int
    environment: Mapping[str, Any]
    out: Path | None
    keep: bool
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    settings_dict: Mapping[str, Any] = field(init=False)
    reference: Any = field(init=False, default=None)
    edits: Mapping[str, LandmarkEdit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cleftscore.score.reference import reference_for

        object.__setattr__(self, "settings_dict", self.settings.to_dict())
        st = self.settings
        kind = "face-referenced" if st.score.face_referenced(st.method) else "paper"
        object.__setattr__(self, "reference", reference_for(st.method, kind, st.reference))


def _display_name(path: str | Path) -> str:
    """The file name as text that can always be written (foreign encodings escaped)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def region_mask(landmarks: np.ndarray, size: int, settings: ScoreSettings) -> np.ndarray:
    """The region S is taken over: the user's mask file, or the named region around the landmarks."""
    if settings.mask_file:
        return load_user_mask(settings.mask_file, size)
    return roi_mask(landmarks, size, region=settings.roi)


@dataclass(eq=False)
class PhotoWork:
    """Working state of one photo between its stages; the record is built from it once.

    ``error`` is set (one line naming the file) as soon as a stage fails; later stages skip it.
    """

    file: str
    photo_id: str
    path: Path
    error: str = ""
    prepared: PreparedPhoto | None = None
    mask: np.ndarray | None = None
    norm: Normalization | None = None
    timings: dict[str, float] = field(default_factory=dict)
    quality: PhotoQuality | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    def fail(self, exc: BaseException | str, *, stage: str) -> None:
        self.error = failure_text(self.file, exc, stage=stage)

    def take(self, norm: Normalization) -> None:
        """Keep the normalizer's result, or fail with its error."""
        if not norm.ok:
            self.fail(norm.error, stage="normalizing")
            return
        self.norm = norm
        self.timings.update(norm.timings)

    def geometry(self) -> FaceGeometry | None:
        if self.prepared is None:
            return None
        a, box = self.prepared.aligned, self.prepared.box
        return FaceGeometry(
            size=a.size,
            faces_found=self.prepared.n_faces,
            face_box=(float(box.left), float(box.top), float(box.right), float(box.bottom)),
            detector_score=float(box.score),
            landmarks_aligned=a.landmarks,
            landmarks_original=a.landmarks_original,
            to_original=a.to_original,
            original_shape=tuple(a.original_shape),  # type: ignore[arg-type]
        )


def align_photo(item: InputPhoto, ctx: RunContext) -> PhotoWork:
    """Load, detect, align and mask one photo; a problem fails the photo, never the batch."""
    work = PhotoWork(file=_display_name(item.path), photo_id=item.photo_id, path=item.path)
    t0 = time.perf_counter()
    try:
        work.prepared = prepare_photo(item.path, size=ctx.size, detector=ctx.settings.detector,
                                      edit=ctx.edits.get(item.photo_id))  # fmt: skip
        work.mask = region_mask(work.prepared.aligned.landmarks, ctx.size, ctx.settings.score)
        work.quality = photo_quality(work.prepared)
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        work.prepared = work.mask = None
        folder = CleftscoreError(f"{work.file}: a folder with no image files in it or its sub-folders")
        work.fail(folder if item.path.is_dir() else exc, stage="aligning")
    work.timings["align_s"] = time.perf_counter() - t0
    return work


def photo_quality(prepared: PreparedPhoto) -> PhotoQuality | None:
    """The quality gate of a prepared photo (None when a check cannot be made: the photo is scored anyway)."""
    box = prepared.box
    try:
        return assess_quality(prepared.original, (box.left, box.top, box.right, box.bottom),
                              prepared.aligned.landmarks_original)  # fmt: skip
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class ScoredFace:
    """The score stage's result for one face, with what the record and the pictures need.

    Attributes
    ----------
    score : PhotoScore
        The score column and its heat map.
    region : (S, S) ndarray of float32
        Weights of the region the score was taken over (drawn on the overlays).
    definition : str
        One line saying what the score is.
    heatmap_max : float
        Top of the heat map's colour scale (the same for every photo of the run).
    heatmap_units : str
        What the heat map's values are.
    measures : dict of str -> Measure
        Numbers made with the score (``paper_S``, ``asymmetry_score``, ...).
    display : (S, S) ndarray of float32 or None
        The heat map as shown and saved (``heatmap.npy``): over the face only, in units of the
        reference's normal variation (:meth:`NormativeReference.in_normal_units`); None without
        a reference.
    display_units : str
        What ``display``'s values are.
    """

    score: PhotoScore
    region: np.ndarray
    definition: str
    heatmap_max: float
    heatmap_units: str
    measures: Mapping[str, Measure]
    display: np.ndarray | None = None
    display_units: str = ""


def score_face(aligned: np.ndarray, normalized: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, *, method: str,
               settings: ScoreSettings, lpips_distance: Any = None, reference: Any = None,
               hand_corrected: bool = False) -> ScoredFace:  # fmt: skip
    """Score, heat map and score-stage measures of a normalized face, placed against a reference.

    The asymmetry method's score column is the face-referenced score by default; the paper's S
    over ``settings.roi`` is then kept as the measure ``paper_S`` (and with ``asymmetry_score=
    "paper"`` the other way round), so both numbers are in every asymmetry record. ``reference``
    (a :class:`~cleftscore.score.reference.NormativeReference`; None: the shipped one where it
    fits) adds ``reference_percentile`` and ``reference_z`` and the map in normal units.
    ``hand_corrected``: the landmarks were corrected by hand and are scored as given.
    """
    from cleftscore.score.reference import place_scored, reference_for

    scored = _score_face(aligned, normalized, mask, landmarks, method=method, settings=settings,
                         lpips_distance=lpips_distance, hand_corrected=hand_corrected)  # fmt: skip
    kind = "face-referenced" if settings.face_referenced(method) else "paper"
    ref = reference if reference is not None else reference_for(method, kind)
    if ref is None:
        return scored
    measures, display = place_scored(ref, scored.score.score, scored.score.heatmap, landmarks)
    return dataclasses.replace(scored, measures={**measures, **scored.measures}, display=display,
                               display_units=ref.heatmap_units)  # fmt: skip


def _score_face(aligned: np.ndarray, normalized: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, *, method: str,
                settings: ScoreSettings, lpips_distance: Any = None, hand_corrected: bool = False) -> ScoredFace:  # fmt: skip
    """Score, heat map and score-stage measures of a normalized face (see :func:`score_face`)."""
    from cleftscore.score.paper import (
        ASYMMETRY_SCORE_DEFINITION,
        NORMAL_FRACTION_DEFINITION,
        PAPER_SCORE_DEFINITION,
        heatmap_top,
        score_definition,
        score_face_referenced,
    )

    paper = score_photo(aligned, normalized, mask, settings=settings, lpips_distance=lpips_distance)
    definition, top = score_definition(method, settings), heatmap_top(method, settings)
    energy_units = "difference energy (sum over channels)"
    if method != "asymmetry":
        return ScoredFace(paper, mask, definition, top, energy_units, {})
    from cleftscore.score.reference import load_reference

    user = mask if settings.mask_file else None
    fr, region = score_face_referenced(aligned, normalized, landmarks, settings=settings, user_mask=user,
                                       hand_corrected=hand_corrected)  # fmt: skip
    fraction = Measure(load_reference().fraction_more_symmetric(fr.score), NORMAL_FRACTION_DEFINITION, stage="score")
    if settings.face_referenced(method):
        region_name = f"user mask {settings.mask_file}" if settings.mask_file else f"{settings.roi} region"
        paper_s = Measure(paper.score, f"{PAPER_SCORE_DEFINITION} ({region_name})", stage="score")
        units = "difference in multiples of the face's own (control-region) residual"
        return ScoredFace(fr, region.astype(np.float32), definition, top, units,
                          {"paper_S": paper_s, "asymmetry_normal_fraction": fraction})  # fmt: skip
    other = Measure(fr.score, ASYMMETRY_SCORE_DEFINITION, stage="score")
    return ScoredFace(paper, mask, definition, top, energy_units,
                      {"asymmetry_score": other, "asymmetry_normal_fraction": fraction})  # fmt: skip


def landmark_measures(prepared: PreparedPhoto) -> dict[str, Measure]:
    """The nasolabial measures of a prepared face (on its corrected points, if any) and their percentiles.

    Each value in intercanthal units gets a ``_pct`` column beside it: its percentile among the
    normal faces of the shipped reference. A face with a landmark edit also gets
    ``landmarks_corrected_points`` (how many points the user moved or added),
    ``landmarks_moved_points`` (how many of the 68 were moved) and, with a ruler
    or iris scale, the ``_mm`` columns. Landmarks too degenerate to measure give no measures.
    """
    from cleftscore.face.measures import load_nasolabial_reference, nasolabial_measures

    edit = prepared.edit
    try:
        nl = nasolabial_measures(prepared.aligned.landmarks_original, extra=edit.added if edit else None,
                                 scale=edit.scale() if edit else None)  # fmt: skip
    except ValueError:
        return {}
    ref = load_nasolabial_reference()
    out: dict[str, Measure] = {}
    for name, value in nl.values.items():
        out[name] = Measure(value, nl.definitions[name])
        pct = ref.percentile(name, value)
        if pct is not None:
            base = name.removesuffix("_icd")
            out[f"{base}_pct"] = Measure(pct, f"percentile (0-100) of {name} among {ref.n[name]} normal faces")
    if edit is not None:
        out["landmarks_corrected_points"] = Measure(
            len(edit.moved) + len(edit.added),
            f"landmarks moved or added by hand ({edit.when or 'time not given'}; {edit.source or 'source not given'}); "
            "alignment, normalization, regions, score, heat map and measures use them",
        )
        # Moved iBUG-68 points replace the re-placed symmetric landmarks in the mirror method, so a
        # re-score must know whether there were any (added hand points do not take part).
        out["landmarks_moved_points"] = Measure(len(edit.moved), "iBUG-68 landmarks moved by hand (see above)")
    return out


def _record(work: PhotoWork, scored: ScoredFace | None, ctx: RunContext) -> PhotoRecord:
    """The photo's record (no pictures yet): ok with its score, or failed with why."""
    norm = work.norm
    record = PhotoRecord(
        file=work.file,
        photo_id=work.photo_id,
        status="ok",
        method=ctx.settings.method,
        settings=ctx.settings_dict,
        notes=work.prepared.notes if work.prepared is not None else (),
        cached=norm.cached if norm is not None else False,
        timings=dict(work.timings),
        environment=ctx.environment,
        geometry=work.geometry(),
        normalization=dict(norm.info) if norm is not None else {},
        quality=work.quality.summary if work.quality is not None else "",
    )
    if not work.ok or scored is None:
        return record.failed(work.error)
    gate = {} if work.quality is None else {k: Measure(v, d) for k, (v, d) in quality_measures(work.quality).items()}
    landmarks = landmark_measures(work.prepared) if work.prepared is not None else {}
    return record.replace(score=scored.score.score, score_definition=scored.definition, heatmap_max=scored.heatmap_max,
                          measures={**(norm.measures if norm is not None else {}), **scored.measures, **gate,
                                    **landmarks})  # fmt: skip


def _arrays(work: PhotoWork, scored: ScoredFace | None) -> dict[str, Any]:
    """The arrays a :class:`PhotoResult` keeps."""
    norm = work.norm
    out: dict[str, Any] = {
        "aligned": work.prepared.aligned.image if work.prepared is not None else None,
        "mask": work.mask,
    }
    if norm is not None:
        out.update(normalized=norm.image, inverted=norm.inverted, snapshots=dict(norm.snapshots))
    if scored is not None:
        out.update(heatmap=scored.score.heatmap, mask=scored.region, heatmap_units=scored.heatmap_units)
    return out


def finish_photo(work: PhotoWork, ctx: RunContext) -> PhotoResult:
    """Score a normalized photo, write its folder (with ``ctx.out``) and build its result.

    A photo that failed before gets its failed record; a problem here fails the photo, never
    the batch.
    """
    scored = None
    if work.ok:
        try:
            assert work.prepared is not None and work.norm is not None and work.mask is not None
            face = work.prepared.aligned
            scored = score_face(face.image, work.norm.image, work.mask, face.landmarks,  # type: ignore[arg-type]
                                method=ctx.settings.method, settings=ctx.settings.score, lpips_distance=ctx.lpips_distance,
                                reference=ctx.reference, hand_corrected=bool(getattr(face, "corrected", ())))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
            work.fail(exc, stage="scoring")
    record = _record(work, scored, ctx)
    if ctx.out is not None:
        files: dict[str, Any] = {}
        if record.ok:
            try:
                files = all_pictures(work, scored)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                record = record.failed(failure_text(record.file, exc, stage="drawing its pictures"))
        record = write_photo_folder(ctx.out, record, files)
    return PhotoResult.of(record, **(_arrays(work, scored) if ctx.keep else {}))


def score_one_photo(item: InputPhoto, ctx: RunContext, normalizer: Normalizer) -> PhotoResult:
    """One photo from file to finished result, on its own (no batch, no cache)."""
    work = align_photo(item, ctx)
    if work.prepared is not None:
        (norm,) = normalizer.normalize([work.prepared.aligned])
        work.take(norm)
    return finish_photo(work, ctx)


def lost_photo(item: InputPhoto, ctx: RunContext, exc: BaseException) -> PhotoResult:
    """The failed result (and record, in ``ctx.out``) of a photo whose work was lost, e.g. with its process."""
    file = _display_name(item.path)
    record = PhotoRecord(file=file, photo_id=item.photo_id, status="failed", method=ctx.settings.method,
                         message=failure_text(file, exc, stage="scoring in a worker process"),
                         settings=ctx.settings_dict, environment=ctx.environment)  # fmt: skip
    if ctx.out is not None:
        record = write_photo_folder(ctx.out, record, {})
    return PhotoResult.of(record)
