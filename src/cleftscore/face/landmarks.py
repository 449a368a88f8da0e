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
from pathlib import Path

import numpy as np

from cleftscore.errors import WeightsMissingError
from cleftscore.face.detect import FaceBox

__all__ = ["N_LANDMARKS", "predict_landmarks", "predictor_path"]

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
