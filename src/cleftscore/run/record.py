"""The photo record: what one photo produced, from the pipeline to the run folder, study and web.

:class:`PhotoRecord` is the typed, frozen, versioned content of a photo's ``result.json``; its
JSON form is :meth:`PhotoRecord.to_json` and :meth:`PhotoRecord.from_json`, which reads every
version written so far. Extra numbers a normalizer or a score produces go in
:attr:`PhotoRecord.measures` (name -> :class:`Measure`): they reach ``result.json`` and the CSV
(one column per name) without touching this module.

:class:`PhotoResult` is what :func:`cleftscore.score_photos` returns: the record itself, plus
the photo's arrays when they were kept (a notebook scoring without a run folder).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.normalize import Measure
from cleftscore.score.paper import PAPER_SCORE_DEFINITION

__all__ = [
    "PICTURES",
    "RECORD_VERSION",
    "SNAPSHOTS_DIR",
    "THUMBNAIL",
    "FaceGeometry",
    "Measure",
    "PhotoRecord",
    "PhotoResult",
    "failure_text",
]

#: Version of the ``result.json`` layout; 1 is the flat layout before measures and pictures.
RECORD_VERSION = 2
SNAPSHOTS_DIR = "snapshots"
THUMBNAIL = "thumb.jpg"
#: Pictures of a scored photo, in the order the record lists them.
PICTURES = (
    "aligned.png",
    "inverted.png",
    "normalized.png",
    "heatmap.png",
    "overlay.png",
    "overlay_original.png",
    "panel.png",
    THUMBNAIL,
)
#: What the score of a record that does not say is: the paper's S.
SCORE_DEFINITION = PAPER_SCORE_DEFINITION
STATUSES = ("ok", "failed")

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FaceGeometry:
    """Where the face was found and how the aligned crop maps back onto the photo.

    Attributes
    ----------
    size : int
        Side of the aligned face in pixels.
    faces_found : int
        Faces the detector found (the largest was used).
    face_box : tuple of 4 float
        ``(left, top, right, bottom)`` of the face in the photo.
    detector_score : float
        Detector confidence of that face.
    landmarks_aligned, landmarks_original : (68, 2) ndarray of float64
        Landmarks in the aligned frame and in the photo.
    to_original : (3, 3) ndarray of float64
        Affine map aligned -> photo.
    original_shape : tuple of int
        ``(H, W)`` of the photo.
    """

    size: int
    faces_found: int
    face_box: tuple[float, float, float, float]
    detector_score: float
    landmarks_aligned: np.ndarray
    landmarks_original: np.ndarray
    to_original: np.ndarray
    original_shape: tuple[int, int]

    def __post_init__(self) -> None:
        for name, shape in (("landmarks_aligned", (68, 2)), ("landmarks_original", (68, 2)), ("to_original", (3, 3))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            object.__setattr__(self, name, value)
        if len(self.face_box) != 4 or len(self.original_shape) != 2:
            raise ValueError("face_box needs 4 numbers and original_shape 2")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")

    def to_json(self) -> dict[str, Any]:
        """The ``geometry`` object of ``result.json`` (arrays as nested lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, geo: Mapping[str, Any]) -> FaceGeometry:
        """Parse the ``geometry`` object of ``result.json``."""
        return cls(
            size=int(geo["size"]),
            faces_found=int(geo["faces_found"]),
            face_box=tuple(float(v) for v in geo["face_box"]),  # type: ignore[arg-type]
            detector_score=float(geo["detector_score"] or 0.0),
            landmarks_aligned=np.asarray(geo["landmarks_aligned"], dtype=np.float64),
            landmarks_original=np.asarray(geo["landmarks_original"], dtype=np.float64),
            to_original=np.asarray(geo["to_original"], dtype=np.float64),
            original_shape=tuple(int(v) for v in geo["original_shape"]),  # type: ignore[arg-type]
        )


def _jsonable(value: Any) -> Any:
    """A field value as JSON: records by their ``to_json``, measures as objects, arrays and tuples as lists."""
    if isinstance(value, FaceGeometry):
        return value.to_json()
    if isinstance(value, Measure):
        return dataclasses.asdict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) if isinstance(v, Measure) else v for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, eq=False)
class PhotoRecord:
    """What one photo produced, as ``result.json`` says it. Built checked, once.

    The fields are in the order ``result.json`` lists them.

    Attributes
    ----------
    file : str
        The photo as given (its path).
    photo_id : str
        Its folder name under ``photos/``.
    status : {"ok", "failed"}
        ``failed`` records carry a one-line ``message`` and have no pictures.
    message : str
        Why it failed (names the file), or empty.
    method : str
        Normalizer name (``gan``, ``asymmetry``, ...).
    score : float or None
        The score column (see ``score_definition``), higher = closer to normal; None when failed.
    score_definition : str
        One line saying what ``score`` is (records written before it existed: the paper's S).
    heatmap_max : float or None
        Top of the heat map's colour scale in the pictures (the same for every photo of a run).
    settings : dict
        Every setting that produced the record (``PipelineSettings.to_dict()``).
    notes : tuple of str
        Remarks (several faces, small face...).
    cached : bool
        The normalization came from the cache or an earlier run.
    timings : dict
        Seconds per stage.
    environment : dict
        Versions, and for the GAN method the generator, its checksum, VGG16 and the device.
    measures : dict of str -> Measure
        Extra numbers (e.g. ``landmark_asymmetry_px``); each becomes a CSV column.
    normalization : dict
        How the normalization ran (GAN: steps, step mode, final loss, batch).
    calibration : dict or None
        Calibrated rating and 0-100 severity, only after ``--calibrate``.
    pictures : tuple of str
        Picture files of the photo's folder (relative), e.g. ``aligned.png``.
    geometry : FaceGeometry or None
        Alignment of the face; None when alignment failed.
    quality : str
        The photo-quality gate (:mod:`cleftscore.face.quality`): ``"ok"``, or the failed checks
        joined by ``";"``; empty when no face was aligned or the record is older than the gate.
    damaged : bool
        True for a stand-in made from an unreadable ``result.json`` (never written).
    """

    file: str
    photo_id: str
    status: str
    message: str = ""
    method: str = ""
    score: float | None = None
    score_definition: str = SCORE_DEFINITION
    heatmap_max: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    cached: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    measures: Mapping[str, Measure] = field(default_factory=dict)
    normalization: Mapping[str, Any] = field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None
    pictures: tuple[str, ...] = ()
    geometry: FaceGeometry | None = None
    quality: str = ""
    damaged: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "failed" and not self.message:
            raise ValueError("a failed record needs a message saying why")
        if self.status == "failed" and self.pictures:
            raise ValueError("a failed record has no pictures (they could show another photo)")
        if self.score is not None:
            object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "pictures", tuple(self.pictures))
        for name, m in self.measures.items():
            if not isinstance(m, Measure):
                raise ValueError(f"measure {name!r} must be a Measure, got {type(m).__name__}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def landmark_asymmetry_px(self) -> float | None:
        """Asymmetry method: RMS landmark residual of the mirror registration (pixels)."""
        m = self.measures.get("landmark_asymmetry_px")
        return None if m is None else m.value

    def replace(self, **changes: Any) -> PhotoRecord:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def failed(self, message: str) -> PhotoRecord:
        """This photo as failed: the message, and nothing that came from its score or pictures.

        What the photo's alignment and normalization produced (notes, timings, geometry,
        how the normalization ran) stays.
        """
        return self.replace(status="failed", message=message, score=None, score_definition="", heatmap_max=None,
                            measures={}, pictures=())  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``result.json``: ``record_version`` and every field but ``damaged``."""
        out: dict[str, Any] = {"record_version": RECORD_VERSION}
        for f in dataclasses.fields(PhotoRecord):
            if f.name != "damaged":
                out[f.name] = _jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PhotoRecord:
        """Parse a ``result.json`` object of any known version.

        Raises
        ------
        ValueError, KeyError, TypeError
            When fields are missing or malformed.
        """
        version = int(data.get("record_version", 1))
        if version > RECORD_VERSION:
            raise ValueError(
                f"record version {version} is newer than this cleftscore reads ({RECORD_VERSION}); update cleftscore"
            )
        if version == 1:
            data = _upgrade_v1(data)
        settings = data["settings"]
        if not isinstance(settings, Mapping):
            raise TypeError("settings must be an object")
        geo = data.get("geometry")
        return cls(
            file=str(data["file"]),
            photo_id=str(data["photo_id"]),
            status=str(data["status"]),
            message=str(data.get("message") or ""),
            method=str(data.get("method") or settings.get("method", "")),
            score=data.get("score"),
            score_definition=str(data.get("score_definition") or SCORE_DEFINITION),
            heatmap_max=None if data.get("heatmap_max") is None else float(data["heatmap_max"]),
            settings=settings,
            notes=tuple(str(n) for n in data.get("notes") or ()),
            cached=bool(data.get("cached", False)),
            timings={str(k): float(v) for k, v in (data.get("timings") or {}).items()},
            environment=dict(data.get("environment") or {}),
            measures={str(k): Measure(**v) for k, v in (data.get("measures") or {}).items()},
            normalization=dict(data.get("normalization") or {}),
            calibration=data.get("calibration"),
            pictures=tuple(str(p) for p in data.get("pictures") or ()),
            geometry=None if geo is None else FaceGeometry.from_json(geo),
            quality=str(data.get("quality") or ""),
        )


def failure_text(file: str, exc: BaseException | str, *, stage: str = "") -> str:
    """The message of a failed record: one line naming the file; unexpected errors say where they happened."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, CleftscoreError):
        text = str(exc)
    else:
        where = f" while {stage}" if stage else ""
        text = f"unexpected error{where} ({type(exc).__name__}: {exc})"
        log.debug("unexpected error on %s", file, exc_info=exc)
    text = " ".join(text.split())
    return text if file in text else f"{file}: {text}"


_V1_ENVIRONMENT = (
    "cleftscore_version",
    "torch_version",
    "python_version",
    "generator",
    "generator_sha256",
    "vgg16",
    "device",
    "resolution",
)


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """The flat layout of cleftscore 0.1 records, in the version-2 shape."""
    out = dict(data)
    out["environment"] = {k: data[k] for k in _V1_ENVIRONMENT if k in data}
    out["geometry"] = None
    if "landmarks_aligned" in data:
        out["geometry"] = {f.name: data.get(f.name) for f in dataclasses.fields(FaceGeometry)}
        out["geometry"]["face_box"] = data.get("face_box") or [0, 0, 0, 0]
        out["geometry"]["faces_found"] = data.get("faces_found") or 1
    out["measures"] = {}
    if data.get("landmark_asymmetry_px") is not None:
        out["measures"]["landmark_asymmetry_px"] = {
            "value": data["landmark_asymmetry_px"],
            "definition": data.get("landmark_asymmetry_definition", ""),
        }
    # Version 1 wrote pictures in place; which of them are there is not recorded.
    out["pictures"] = [] if data.get("status") != "ok" else [p for p in PICTURES if p != THUMBNAIL]
    return out


@dataclass(frozen=True, eq=False)
class PhotoResult(PhotoRecord):
    """What :func:`cleftscore.score_photos` returns for one photo: its record, and its arrays if kept.

    Every field of :class:`PhotoRecord` (``score``, ``ok``, ``message``, ``measures``...), plus
    the arrays below. They are kept only when :func:`~cleftscore.score_photos` is asked to (by
    default when it writes no run folder, where a run folder holds them as pictures instead);
    otherwise they are None. ``to_json`` writes the record alone.

    Attributes
    ----------
    aligned, normalized : (S, S, 3) ndarray of uint8 or None
        The aligned photo and its normalized face.
    inverted : (S, S, 3) ndarray of uint8 or None
        GAN method: the inversion before adaptation.
    heatmap : (S, S) ndarray of float32 or None
        The score's heat map in the aligned frame, >= 0.
    mask : (S, S) ndarray of float32 or None
        Weights of the region the score was taken over.
    heatmap_units : str
        What the heat map's values are (the label of ``heatmap.png``'s colour bar).
    snapshots : dict of int -> (S, S, 3) uint8
        GAN method: intermediate adaptation steps.
    """

    aligned: np.ndarray | None = None
    normalized: np.ndarray | None = None
    inverted: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    mask: np.ndarray | None = None
    heatmap_units: str = ""
    snapshots: Mapping[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, record: PhotoRecord, **arrays: Any) -> PhotoResult:
        """``record`` as a result, with the given arrays (none: a result without arrays)."""
        return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(PhotoRecord)}, **arrays)
