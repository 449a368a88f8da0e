"""The nasolabial measures drawn on the aligned face: the points, the face frame and each distance.

A pure function (:func:`measures_picture`): arrays and measures in, an RGB picture out; the run
folder writes it as ``measures.png``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cleftscore.face.measures import NasolabialMeasures
from cleftscore.face.prepare import PreparedPhoto

__all__ = ["measures_picture", "measures_pictures"]

# One colour per measure (RGB), chosen to stay apart on skin; midline measures share the frame's.
_COLOURS = {
    "alar_base_height": (0, 200, 255),
    "alar_base_lateral": (0, 120, 255),
    "nostril_height": (170, 90, 255),
    "cupid_peak_height": (255, 80, 160),
    "lateral_lip_height": (255, 200, 0),
    "cheilion_height": (60, 220, 60),
    "hemi_mouth_width": (150, 230, 120),
    "cleft_width": (255, 60, 60),
}
_FRAME = (255, 255, 255)


def _legend_lines(values: Mapping[str, float], measures: NasolabialMeasures) -> list[tuple[str, tuple[int, int, int]]]:
    names = sorted({s[0] for s in measures.segments}, key=lambda n: list(_COLOURS).index(n) if n in _COLOURS else 99)
    lines = []
    for name in names:
        asym = values.get(f"nl_{name}_asym_icd", values.get(f"nl_{name}_icd"))
        pct = values.get(f"nl_{name}_asym_pct", values.get(f"nl_{name}_pct"))
        text = name.replace("_", " ")
        if asym is not None:
            text += f": {'|R-L| ' if f'nl_{name}_asym_icd' in values else ''}{asym:.3f} ICD"
        if pct is not None:
            text += f" (p{pct:.0f})"
        lines.append((text, _COLOURS.get(name, (150, 150, 150))))
    return lines


def measures_picture(aligned: np.ndarray, measures: NasolabialMeasures, *,
                     values: Mapping[str, float] | None = None) -> np.ndarray:  # fmt: skip
    """The aligned face with the measured points, the eye line, the midline and every distance.

    Parameters
    ----------
    aligned : (S, S, 3) ndarray of uint8
        The aligned face, 0..255 RGB.
    measures : NasolabialMeasures
        Measured on landmarks *in the aligned frame* (the values are the same in any frame).
    values : dict of str -> float, optional
        Values to print in the legend (e.g. with their ``_pct`` percentiles); default
        ``measures.values``. The midline deviations are drawn in white with the frame, and
        listed in grey.

    Returns
    -------
    (S, S + W, 3) ndarray of uint8
        The face with the drawing, and a legend strip on its right: each measure's asymmetry in
        intercanthal distances (ICD) and its percentile among normal faces where known.
    """
    import cv2

    img = np.asarray(aligned)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"aligned must be an (S, S, 3) uint8 image, got {img.shape} {img.dtype}")
    canvas = np.ascontiguousarray(img.copy())
    s = canvas.shape[0]
    thick = max(1, round(s / 400))
    aa = cv2.LINE_AA

    def pt(p: np.ndarray) -> tuple[int, int]:
        return round(float(p[0]) * 16), round(float(p[1]) * 16)

    origin = np.asarray(measures.frame["origin"], dtype=np.float64)
    x_axis = np.asarray(measures.frame["x_axis"], dtype=np.float64)
    y_axis = np.asarray(measures.frame["y_axis"], dtype=np.float64)
    reach = 2.0 * s
    for axis in (x_axis, y_axis):
        cv2.line(canvas, pt(origin - axis * reach), pt(origin + axis * reach), _FRAME, thick, aa, shift=4)
    for name, a, b in measures.segments:
        cv2.line(canvas, pt(measures.foot(a)), pt(measures.foot(b)), _COLOURS.get(name, _FRAME), thick + 1, aa, shift=4)
    radius = max(2, round(s / 200)) * 16
    for p in measures.points.values():
        cv2.circle(canvas, pt(p), radius, (0, 0, 0), -1, aa, shift=4)
        cv2.circle(canvas, pt(p), radius * 2 // 3, (255, 255, 255), -1, aa, shift=4)
    lines = _legend_lines(values if values is not None else measures.values, measures)
    scale = max(0.35, s / 1400)
    line_h = round(28 * scale) + 6
    width = round(960 * scale)
    legend = np.full((s, width, 3), 255, np.uint8)
    for i, (text, colour) in enumerate(lines):
        y = line_h * (i + 1)
        if y > s - 4:
            break
        cv2.rectangle(legend, (6, y - line_h // 2 - 4), (6 + line_h // 2, y - 4), colour, -1)
        cv2.putText(legend, text, (12 + line_h // 2, y - 4), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.9, (20, 20, 20),
                    max(1, round(scale * 1.5)), aa)  # fmt: skip
    return np.concatenate([canvas, legend], axis=1)


def measures_pictures(prepared: PreparedPhoto) -> dict[str, np.ndarray]:
    """``{"measures.png": picture}`` of a prepared face (on its corrected points), or ``{}`` when it cannot be measured."""
    from cleftscore.face.align import transform_points
    from cleftscore.face.measures import load_nasolabial_reference, nasolabial_measures

    face = prepared.aligned
    edit = prepared.edit
    extra = {}
    if edit is not None and edit.added:
        xy = transform_points(face.to_aligned, np.array(list(edit.added.values())))
        extra = dict(zip(edit.added, xy, strict=True))
    try:
        m = nasolabial_measures(face.landmarks, extra=extra)
    except ValueError:
        return {}
    ref = load_nasolabial_reference()
    values = dict(m.values)
    for name, value in m.values.items():
        pct = ref.percentile(name, value)
        if pct is not None:
            values[f"{name.removesuffix('_icd')}_pct"] = pct
    return {"measures.png": measures_picture(face.image, m, values=values)}
