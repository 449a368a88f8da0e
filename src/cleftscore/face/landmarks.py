"""68-point facial landmarks (dlib's shape predictor, iBUG 300-W point order).

The model file ``shape_predictor_68_face_landmarks.dat`` ships in the PyPI package
``face-recognition-models``. We locate that package's folder with :mod:`importlib` without
importing it (its ``__init__`` imports ``pkg_resources``, which is deprecated and slow), so no
network and no ``setuptools`` are needed at run time.

The dlib 68-point model was trained on the iBUG 300-W data set, whose licence excludes
commercial use.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import WeightsMissingError
from cleftscore.face.detect import FaceBox
from cleftscore.face.measures import AUTOMATIC_POINTS, HAND_POINTS, Scale

__all__ = ["N_LANDMARKS", "LandmarkEdit", "predict_landmarks", "predictor_path"]

#: Number of points in the iBUG 68 scheme (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes,
#: 48-67 mouth; indices 0-based, as dlib returns them).
N_LANDMARKS = 68
_MODEL_PACKAGE = "face_recognition_models"
_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"

# A Haar box frames the face differently from the HOG boxes dlib's predictor was trained on:
# it is usually larger and sits higher. Measured on the sample photos (HOG box vs Haar box, same
# face): HOG width 0.73-1.03 (mean ~0.86) x Haar width; HOG centre 0.02-0.10 (mean ~0.08) Haar
# widths lower. We map Haar boxes to a HOG-style box before prediction.
_HAAR_TO_HOG_SCALE = 0.86
_HAAR_TO_HOG_SHIFT_Y = 0.08


def predictor_path() -> Path:
    """Path of dlib's 68-point model inside the installed ``face-recognition-models`` package.

    Returns
    -------
    pathlib.Path
        The ``.dat`` file.

    Raises
    ------
    WeightsMissingError
        If the package or the file is not installed.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec(_MODEL_PACKAGE)  # finds, does not import
    if spec is not None:
        for loc in spec.submodule_search_locations or ():
            candidates.append(Path(loc) / "models" / _MODEL_FILE)
        if spec.origin:
            candidates.append(Path(spec.origin).parent / "models" / _MODEL_FILE)
    try:
        dist = importlib.metadata.distribution("face_recognition_models")
        for f in dist.files or ():
            if f.name == _MODEL_FILE:
                candidates.append(Path(str(dist.locate_file(f))))
    except importlib.metadata.PackageNotFoundError:
        pass
    for cand in candidates:
        if cand.is_file():
            return cand
    raise WeightsMissingError(
        f"{_MODEL_FILE}: dlib's 68-point landmark model is not installed; run: pip install face-recognition-models"
    )


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str):  # noqa: ANN202 - dlib type
    import dlib

    return dlib.shape_predictor(path)


def _predictor_rect(box: FaceBox) -> tuple[int, int, int, int]:
    """Integer (left, top, right, bottom) in dlib's inclusive convention, HOG-style framing."""
    left, top, right, bottom = box.left, box.top, box.right, box.bottom
    if box.detector == "haar":
        cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
        w = (right - left) * _HAAR_TO_HOG_SCALE
        h = (bottom - top) * _HAAR_TO_HOG_SCALE
        cy += (right - left) * _HAAR_TO_HOG_SHIFT_Y
        left, right, top, bottom = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    return round(left), round(top), round(right) - 1, round(bottom) - 1


def predict_landmarks(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """The 68 iBUG landmarks of the face in ``box``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, 0..255.
    box : FaceBox
        A face from :func:`cleftscore.face.detect.detect_faces` on the same image.

    Returns
    -------
    numpy.ndarray
        ``(68, 2)`` float64 ``(x, y)`` pixel coordinates (pixel centres at integers), in dlib's
        iBUG-68 order: 0-16 jaw, 17-21 and 22-26 brows, 27-35 nose, 36-41 and 42-47 eyes
        (image left, then image right), 48-59 outer lips, 60-67 inner lips.

    Raises
    ------
    ValueError
        If the image is not ``(H, W, 3)`` uint8.
    WeightsMissingError
        If the landmark model is not installed.
    """
    import dlib

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 0..255 image, got dtype {arr.dtype}")
    predictor = _load_predictor(str(predictor_path()))
    rect = dlib.rectangle(*_predictor_rect(box))
    shape = predictor(np.ascontiguousarray(arr), rect)
    if shape.num_parts != N_LANDMARKS:
        raise ValueError(f"the landmark model returned {shape.num_parts} points, expected {N_LANDMARKS}")
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


Point = tuple[float, float]


def _point(value: Any, what: str) -> Point:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be two numbers (x, y), got {value!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return (x, y)


@dataclass(frozen=True, eq=False)
class LandmarkEdit:
    """Landmarks a user placed on one photo by hand, in the photo's pixel coordinates.

    Attributes
    ----------
    moved : dict of int -> (x, y)
        New positions of some of the 68 points (iBUG index 0..67); the others stay where the
        predictor put them.
    added : dict of str -> (x, y)
        Named points the predictor does not place (names of
        :data:`cleftscore.face.measures.HAND_POINTS`).
    ruler : ((x, y), (x, y), float) or None
        A known distance drawn on the photo: its two ends and its length in mm.
    iris : ((x, y), (x, y)) or None
        One iris's horizontal edges, for a scale by the iris-diameter convention (used when
        there is no ruler).
    when : str
        When the edit was made (ISO 8601, UTC).
    source : str
        Where it came from (a landmark file, the web editor).
    """

    moved: Mapping[int, Point] = field(default_factory=dict)
    added: Mapping[str, Point] = field(default_factory=dict)
    ruler: tuple[Point, Point, float] | None = None
    iris: tuple[Point, Point] | None = None
    when: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        moved: dict[int, Point] = {}
        for key, xy in self.moved.items():
            index = int(key)
            if not 0 <= index < N_LANDMARKS or str(key).strip() != str(index):
                raise ValueError(f"a moved landmark's index must be 0..{N_LANDMARKS - 1}, got {key!r}")
            moved[index] = _point(xy, f"landmark {index}")
        added: dict[str, Point] = {}
        for name, xy in self.added.items():
            if name in AUTOMATIC_POINTS:
                raise ValueError(
                    f"{name!r} is dlib point {AUTOMATIC_POINTS[name]}: move that point instead of adding it"
                )
            if name not in HAND_POINTS:
                raise ValueError(f"unknown point {name!r}; points one can add: {', '.join(HAND_POINTS)}")
            added[name] = _point(xy, name)
        object.__setattr__(self, "moved", moved)
        object.__setattr__(self, "added", added)
        if self.ruler is not None:
            a, b, mm = self.ruler
            object.__setattr__(self, "ruler", (_point(a, "ruler start"), _point(b, "ruler end"), float(mm)))
            self.scale()  # checks the length and the mm
        if self.iris is not None:
            a, b = self.iris
            object.__setattr__(self, "iris", (_point(a, "iris edge"), _point(b, "iris edge")))
            self.scale()

    @property
    def empty(self) -> bool:
        """Nothing moved, added or scaled."""
        return not (self.moved or self.added or self.ruler or self.iris)

    def apply(self, landmarks: np.ndarray) -> np.ndarray:
        """The 68 points with the moved ones in their new places (a new ``(68, 2)`` float64 array)."""
        out = np.array(landmarks, dtype=np.float64)
        if out.shape != (N_LANDMARKS, 2):
            raise ValueError(f"landmarks must have shape ({N_LANDMARKS}, 2), got {out.shape}")
        for index, xy in self.moved.items():
            out[index] = xy
        return out

    def scale(self) -> Scale | None:
        """Millimetres per photo pixel from the ruler, else from the iris convention, else None."""
        if self.ruler is not None:
            return Scale.from_ruler(self.ruler[0], self.ruler[1], self.ruler[2])
        if self.iris is not None:
            return Scale.from_iris(*self.iris)
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON object that :meth:`from_json` reads back."""
        return {
            "moved": {str(k): list(v) for k, v in sorted(self.moved.items())},
            "added": {k: list(v) for k, v in self.added.items()},
            "ruler": None if self.ruler is None else {"start": list(self.ruler[0]), "end": list(self.ruler[1]),
                                                      "mm": self.ruler[2]},
            "iris": None if self.iris is None else [list(self.iris[0]), list(self.iris[1])],
            "when": self.when,
            "source": self.source,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LandmarkEdit:
        """Parse :meth:`to_json`'s object.

        Raises
        ------
        ValueError, KeyError, TypeError
            When it is malformed.
        """
        ruler = data.get("ruler")
        iris = data.get("iris")
        return cls(
            moved={int(k): v for k, v in (data.get("moved") or {}).items()},
            added=dict(data.get("added") or {}),
            ruler=None if not ruler else (ruler["start"], ruler["end"], float(ruler["mm"])),
            iris=None if not iris else (iris[0], iris[1]),
            when=str(data.get("when") or ""),
            source=str(data.get("source") or ""),
        )
