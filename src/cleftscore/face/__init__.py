"""Face preprocessing: detect the face, place 68 landmarks, align it as FFHQ did, and build
regions of interest in the aligned frame (with the transform back to the photo).

Typical use::

    from cleftscore.face import prepare_photo, roi_mask, warp_to_original
    photo = prepare_photo("patient.jpg", size=1024)
    mask = roi_mask(photo.aligned.landmarks, photo.aligned.size, region="mouth")
    on_photo = warp_to_original(mask, photo.aligned)
"""

from __future__ import annotations

from cleftscore.face.align import (
    AlignedFace,
    align_face,
    coverage_original,
    ffhq_quad,
    transform_points,
    warp_to_aligned,
    warp_to_original,
)
from cleftscore.face.detect import DETECTORS, FaceBox, detect_faces
from cleftscore.face.landmarks import predict_landmarks, predictor_path
from cleftscore.face.prepare import PreparedPhoto, prepare_photo, render_preview
from cleftscore.face.roi import REGIONS, load_user_mask, roi_mask, roi_polygons

__all__ = [
    "DETECTORS",
    "REGIONS",
    "AlignedFace",
    "FaceBox",
    "PreparedPhoto",
    "align_face",
    "coverage_original",
    "detect_faces",
    "ffhq_quad",
    "load_user_mask",
    "predict_landmarks",
    "predictor_path",
    "prepare_photo",
    "render_preview",
    "roi_mask",
    "roi_polygons",
    "transform_points",
    "warp_to_aligned",
    "warp_to_original",
]
