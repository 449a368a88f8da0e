"""One call from a photo file to an aligned face: load, detect, landmarks, align.

:func:`prepare_photo` is what the pipeline and the ``align`` command use. Problems with the
photo become a :class:`~cleftscore.errors.CleftscoreError` subclass with one line naming the file.
:func:`render_preview` draws what was found (box, landmarks, aligned square, regions of
interest) on the original photo, as a pure function returning an image.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleftscore.errors import FaceNotFoundError
from cleftscore.face.align import AlignedFace, align_face, transform_points
from cleftscore.face.detect import DETECTORS, Detector, FaceBox, detect_faces
from cleftscore.face.landmarks import N_LANDMARKS, LandmarkEdit, predict_landmarks
from cleftscore.face.roi import roi_polygons
from cleftscore.face.symmetric import refine_landmarks
from cleftscore.io import load_image

__all__ = ["HandCorrectedFace", "PreparedPhoto", "prepare_photo", "render_preview"]

_DETECTOR_NAMES = {"hog": "dlib HOG detector", "haar": "OpenCV Haar cascade"}


@dataclass(frozen=True, eq=False)
class HandCorrectedFace(AlignedFace):
    """An aligned face whose landmarks were (partly) placed by hand.

    Whatever places landmarks on the aligned image again (e.g. to make them mirror-symmetric)
    must keep the points listed in ``corrected`` where the user put them:
    ``lm[list(face.corrected)] = face.landmarks[list(face.corrected)]``.

    Attributes
    ----------
    corrected : tuple of int
        iBUG indices of the points the user moved.
    """

    corrected: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class PreparedPhoto:
    """A photo with its face found and aligned.

    Attributes
    ----------
    path : pathlib.Path or None
        Source file (None when an array was given).
    original : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB photo, EXIF orientation applied.
    box : FaceBox
        The face used (the largest found).
    n_faces : int
        How many faces the detector found.
    aligned : AlignedFace
        The FFHQ-aligned face and its transform back to ``original``.
    notes : tuple of str
        Things the user should know, e.g. ``"3 faces found; using the largest"``.
    edit : LandmarkEdit or None
        The user's landmark edit the face was aligned with (None: the predictor's points).
    predicted : (68, 2) ndarray of float64 or None
        With an edit: where the landmark model had put the 68 points in the photo (refined, see
        ``refine``), before the edit.
    """

    path: Path | None
    original: np.ndarray
    box: FaceBox
    n_faces: int
    aligned: AlignedFace
    notes: tuple[str, ...]
    edit: LandmarkEdit | None = None
    predicted: np.ndarray | None = None

    @property
    def name(self) -> str:
        """The file name used in messages (``"<array>"`` for arrays)."""
        return str(self.path) if self.path is not None else "<array>"


def prepare_photo(
    path_or_array: str | os.PathLike[str] | np.ndarray,
    *,
    size: int = 1024,
    detector: Detector = "hog",
    max_pixels: int = 100_000_000,
    edit: LandmarkEdit | None = None,
    refine: bool = True,
) -> PreparedPhoto:
    """Load a photo, find its largest face, place the 68 landmarks and align it as FFHQ did.

    Parameters
    ----------
    path_or_array : str, os.PathLike or numpy.ndarray
        Photo file, or an ``(H, W, 3)`` uint8 RGB array.
    size : int, optional
        Side of the aligned face, a power of two (1024 for the FFHQ generator).
    detector : {"hog", "haar"}, optional
        Face detector (see :func:`cleftscore.face.detect.detect_faces`).
    max_pixels : int, optional
        Pixel limit passed to :func:`cleftscore.io.load_image`.
    edit : LandmarkEdit, optional
        Landmarks corrected by hand: the moved points replace the predictor's before the face
        is aligned, so the alignment and everything after it use them. An edit that places all
        68 points also serves a photo where the detector finds no face.
    refine : bool, optional
        Place the points again from the roughly aligned face and its mirror image before the
        final alignment (:func:`cleftscore.face.symmetric.refine_landmarks`), so that a crop,
        a smaller copy, a turn or a mirror flip of the same photo gives the same aligned face.
        An edit is applied to the refined points: points placed by hand are used as placed, the
        others are the refined ones (``predicted`` holds the refined points).

    Returns
    -------
    PreparedPhoto

    Raises
    ------
    ImageLoadError
        If the file cannot be read.
    FaceNotFoundError
        If no face is found.
    ValueError
        For a bad size, detector name or array.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    if not (isinstance(size, (int, np.integer)) and size >= 16 and size & (size - 1) == 0):
        raise ValueError(f"size must be a power of two >= 16 (e.g. 256, 1024), got {size!r}")
    if isinstance(path_or_array, np.ndarray):
        path = None
        name = "<array>"
        image = path_or_array
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
        image = np.ascontiguousarray(image)
    else:
        path = Path(path_or_array)
        name = str(path)
        image = load_image(path, max_pixels=max_pixels)
    boxes = detect_faces(image, detector=detector)
    notes: list[str] = []
    if not boxes and edit is not None and len(edit.moved) == N_LANDMARKS:
        boxes = [_box_around(edit, detector)]
        notes.append("no face found by the detector: all 68 points were placed by hand, the face box drawn around them")
    if not boxes:
        other = "haar" if detector == "hog" else "hog"
        raise FaceNotFoundError(
            f"{name}: no face found (tried the {_DETECTOR_NAMES[detector]}); "
            f"try --detector {other} or a closer, frontal crop of the face"
        )
    box = boxes[0]
    if len(boxes) > 1:
        notes.append(f"{len(boxes)} faces found; using the largest")
    landmarks = predicted = predict_landmarks(image, box)
    if refine:
        try:
            landmarks = predicted = refine_landmarks(image, predicted)
        except ValueError as exc:  # degenerate points on a tiny or odd face
            raise FaceNotFoundError(f"{name}: the face found could not be aligned ({exc}); try a closer crop") from None
    if edit is not None and not edit.empty:
        landmarks = edit.apply(predicted)
        notes.append(f"landmarks corrected by hand{f' ({edit.when})' if edit.when else ''}: {len(edit.moved)} moved, "
                     f"{len(edit.added)} added")  # fmt: skip
    else:
        edit = None
    try:
        aligned = align_face(image, landmarks, size=size)
    except ValueError as exc:  # degenerate landmarks on a tiny or odd face
        raise FaceNotFoundError(f"{name}: the face found could not be aligned ({exc}); try a closer crop") from None
    if edit is not None:
        fields = {f.name: getattr(aligned, f.name) for f in dataclasses.fields(AlignedFace)}
        aligned = HandCorrectedFace(**fields, corrected=tuple(sorted(edit.moved)))
    if aligned.scale < 0.25:
        notes.append(
            f"the face is small ({aligned.scale * size:.0f} px across the crop) and was upsampled "
            f"{1 / aligned.scale:.1f}x to {size} px; expect a blurry aligned face"
        )
    return PreparedPhoto(path=path, original=image, box=box, n_faces=len(boxes), aligned=aligned, notes=tuple(notes),
                         edit=edit, predicted=predicted if edit is not None else None)  # fmt: skip


def _box_around(edit: LandmarkEdit, detector: Detector) -> FaceBox:
    """A face box around 68 hand-placed points (as wide as the jaw, from the brows to the chin), score 0."""
    pts = np.array([edit.moved[i] for i in range(N_LANDMARKS)], dtype=np.float64)
    (left, top), (right, bottom) = pts.min(axis=0), pts.max(axis=0)
    if right - left < 2 or bottom - top < 2:
        raise FaceNotFoundError("the 68 points placed by hand span less than 2 pixels; place them on the face")
    return FaceBox(float(left), float(top), float(right), float(bottom), 0.0, detector)


def _contour_points(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * 16).astype(np.int32).reshape(-1, 1, 2)


def render_preview(prepared: PreparedPhoto, *, max_side: int = 1600) -> np.ndarray:
    """The original photo with the face box, aligned square, landmarks and regions drawn on it.

    Parameters
    ----------
    prepared : PreparedPhoto
        Result of :func:`prepare_photo`.
    max_side : int, optional
        The preview is downscaled so its long side is at most this many pixels.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` uint8 RGB: box in grey, aligned square in yellow, ``mouth`` region in
        red, ``face`` region (eyes cut out) in cyan, landmarks as green dots.
    """
    import cv2

    img = prepared.original
    h, w = img.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor < 1.0:
        img = cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(img.copy())
    to_canvas = np.diag([factor, factor, 1.0]) @ prepared.aligned.to_original
    thick = max(1, round(max(canvas.shape[:2]) / 400))
    aa = cv2.LINE_AA

    def poly_line(points_canvas: np.ndarray, color: tuple[int, int, int]) -> None:
        cv2.polylines(canvas, [_contour_points(points_canvas)], True, color, thick, aa, shift=4)

    b = prepared.box
    box_pts = np.array([(b.left, b.top), (b.left, b.bottom), (b.right, b.bottom), (b.right, b.top)]) * factor
    poly_line(box_pts, (160, 160, 160))
    poly_line(prepared.aligned.quad_original * factor, (255, 220, 0))
    lm_al = prepared.aligned.landmarks
    outer, _ = roi_polygons(lm_al, "mouth")
    poly_line(transform_points(to_canvas, outer), (255, 40, 40))
    outer, holes = roi_polygons(lm_al, "face")
    poly_line(transform_points(to_canvas, outer), (0, 220, 255))
    for hole in holes:
        poly_line(transform_points(to_canvas, hole), (0, 220, 255))
    radius = max(1, thick)
    for x, y in prepared.aligned.landmarks_original * factor:
        cv2.circle(canvas, (round(x * 16), round(y * 16)), radius * 16, (0, 255, 0), -1, aa, shift=4)
    return canvas
