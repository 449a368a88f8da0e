"""The nasolabial measures on the development photos (``cleftscore bench nasolabial``); aggregates only.

For every photo of a development folder (``labels.csv`` of ``devsets/rebuild.py``) the 68 dlib
points are placed on the whole photo (as the pipeline does) and the measures of
:mod:`cleftscore.face.measures` taken. The report holds:

- the **normal reference** (percentiles per measure over the normal photos; the shipped JSON is one);
- **graded set**: Spearman of the alar measures with its A/B ratio, automatic and with the dots
  drawn on the photos used as corrected points (blue: alar grooves, green: inner eye corners,
  red: the grading's upper reference), found by colour; also the grading's own image-vertical
  construction, which keeps the head's roll;
- **repeatability**: the 90th percentile of the change of each measure under photo changes of
  ``cleftscore bench robustness`` (in the measure's units and as a fraction of its normal 5-95 %
  range), midline deviations as absolute values;
- **AUROC** of cleft vs normal children, before vs after repair, all clefts vs all normals.

Nothing per photo leaves this module: the report has counts and statistics only.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.face.measures import NasolabialReference, nasolabial_measures

__all__ = ["DOT_COLOURS", "REPEAT_VARIANTS", "find_dots", "run_nasolabial"]

#: RGB of the dots drawn on the graded photos.
DOT_COLOURS = {"red": (232, 42, 42), "green": (50, 126, 38), "blue": (56, 39, 215)}
#: The photo changes measured (names of ``cleftscore.benchmarks.robustness.VARIANTS``).
REPEAT_VARIANTS = ("grayscale", "mirror_flip", "jpeg_q30", "jpeg_q75", "side_512", "turn_+7", "turn_-7")
_KEYS = ("nl_alar_height_ratio", "nl_alar_base_height_asym_icd")


def find_dots(image: np.ndarray, *, tolerance: int = 40) -> dict[str, list[np.ndarray] | None]:
    """The two largest round dots of each colour of :data:`DOT_COLOURS`, sorted left to right (None if fewer).

    A dot is a connected patch within ``tolerance`` of its colour in every channel, at least 100
    pixels, about as wide as high and filling at least 65 % of its box (the drawn labels' letters
    do not).
    """
    import cv2

    a = np.asarray(image).astype(np.int32)
    out: dict[str, list[np.ndarray] | None] = {}
    for name, colour in DOT_COLOURS.items():
        mask = (np.abs(a - np.array(colour)).max(axis=2) < tolerance).astype(np.uint8)
        n, _, stats, centres = cv2.connectedComponentsWithStats(mask)
        found = []
        for i in range(1, n):
            w, h, area = stats[i, 2], stats[i, 3], stats[i, 4]
            if area >= 100 and 0.75 < w / h < 1.33 and area / (w * h) >= 0.65:
                found.append((int(area), centres[i].astype(np.float64)))
        found.sort(key=lambda t: -t[0])
        out[name] = sorted((p for _, p in found[:2]), key=lambda p: p[0]) if len(found) >= 2 else None
    return out


def _landmarks(image: np.ndarray) -> np.ndarray | None:
    from cleftscore.face.detect import detect_faces
    from cleftscore.face.landmarks import predict_landmarks

    boxes = detect_faces(image, detector="hog")
    return predict_landmarks(image, boxes[0]) if boxes else None


def _abs_dev(values: Mapping[str, float]) -> dict[str, float]:
    return {k: abs(v) if "deviation" in k else v for k, v in values.items()}


def _photo(root: Path, row: Mapping[str, str], variants: Sequence[str]) -> dict[str, Any]:
    """One photo's measures (and those of its changed copies); kept in memory only."""
    from cleftscore.io import load_image

    image = load_image(root / row["file"])
    lm = _landmarks(image)
    out: dict[str, Any] = {"row": dict(row), "values": None, "variants": {}, "dots": None, "lm": lm}
    if row.get("set") == "pre_post_graded":
        out["dots"] = find_dots(image)
    if lm is None:
        return out
    out["values"] = nasolabial_measures(lm).values
    if variants:
        from cleftscore.benchmarks.robustness import make_variant

        for name in variants:
            changed = make_variant(image, name)
            lm_v = None if changed is None else _landmarks(changed)
            if lm_v is not None:
                out["variants"][name] = nasolabial_measures(lm_v).values
    return out


def _dot_values(dots: Mapping[str, Any]) -> dict[str, float]:
    """The alar measures read from the dots alone: as the grading reads them, and in a face frame."""
    blue, green, red = dots.get("blue"), dots.get("green"), dots.get("red")
    out: dict[str, float] = {}
    if blue is not None and red is not None:
        height = abs((blue[0][1] + blue[1][1]) / 2 - (red[0][1] + red[1][1]) / 2)
        out["dots_image_vertical_as_graded"] = abs(blue[1][1] - blue[0][1]) / height
    if blue is not None and green is not None:
        across = green[1] - green[0]
        down = np.array([-across[1], across[0]]) / np.hypot(*across)
        out["dots_face_frame_over_canthal_dots"] = abs(float(np.dot(blue[1] - blue[0], down))) / np.hypot(*across)
    return out


def _point_values(values: Mapping[str, float], lm: np.ndarray, dots: Mapping[str, Any]) -> dict[str, float]:
    """The alar measures on dlib's points, and with the dots as corrected points (alar creases, inner eye corners)."""
    nasal = abs(lm[33, 1] - lm[27, 1])
    out = {f"automatic {k}": values[k] for k in _KEYS}
    out["automatic_image_vertical"] = abs(lm[31, 1] - lm[35, 1]) / nasal
    blue, green = dots.get("blue"), dots.get("green")
    if blue is not None:
        out["corrected_image_vertical"] = abs(blue[1][1] - blue[0][1]) / nasal
        fixed = lm.copy()
        if green is not None:
            fixed[39], fixed[42] = green[0], green[1]
        corrected = nasolabial_measures(fixed, extra={"alar_crease_right": blue[0], "alar_crease_left": blue[1]})
        out.update({f"corrected {k}": corrected.values[k] for k in _KEYS})
    return out


def _graded(photos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Spearman of the alar measures with A/B: automatic, on the dots as corrected points, and image-vertical."""
    from cleftscore.benchmarks.cleft_synth import spearman

    graded = [p for p in photos if p["row"].get("set") == "pre_post_graded" and p["row"].get("ab_ratio")]
    rows: dict[str, list[tuple[float, float]]] = {}
    for p in graded:
        ab, dots = float(p["row"]["ab_ratio"]), p["dots"] or {}
        found = _dot_values(dots)
        if p["lm"] is not None:
            found.update(_point_values(p["values"], p["lm"], dots))
        for name, value in found.items():
            rows.setdefault(name, []).append((value, ab))
    out: dict[str, Any] = {"photos": len(graded), "faces_found": sum(p["lm"] is not None for p in graded),
                           "dots_found": sum((p["dots"] or {}).get("blue") is not None for p in graded)}  # fmt: skip
    for name, pairs in rows.items():
        rho, pval = spearman([v for v, _ in pairs], [ab for _, ab in pairs])
        out[name] = {"spearman": rho, "p": pval, "n": len(pairs)}
    return out


def _repeatability(photos: Sequence[Mapping[str, Any]], ref_rows: Sequence[Mapping[str, float]],
                   names: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """p90 |change| per measure and photo change, and as a fraction of the normal 5-95 % range."""
    normal = [_abs_dev(r) for r in ref_rows]
    out: dict[str, Any] = {}
    for k in names:
        normal_k = np.array([r[k] for r in normal if k in r])
        lo, hi = np.percentile(normal_k, [5, 95])
        per: dict[str, Any] = {"normal_5_95": [float(lo), float(hi)]}
        for variant in REPEAT_VARIANTS:
            changes = [abs(_abs_dev(p["variants"][variant])[k] - _abs_dev(p["values"])[k])
                       for p in photos if variant in p["variants"] and k in p["values"]]  # fmt: skip
            if changes:
                p90 = float(np.percentile(changes, 90))
                per[variant] = {"p90": p90, "fraction_of_normal_range": p90 / float(hi - lo), "n": len(changes)}
        out[k] = per
    return out


def _aurocs(photos: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    from cleftscore.benchmarks.cleft_synth import auroc

    def values(pred: Callable[[Mapping[str, str]], bool]) -> list[dict[str, float]]:
        return [_abs_dev(p["values"]) for p in photos if p["values"] is not None and pred(p["row"])]

    groups = {
        "cleft_vs_normal_children": (values(lambda r: r["group"] == "cleft" and r["set"] != "pre_post_graded"),
                                     values(lambda r: r["set"] == "normal_children_aligned")),
        "before_vs_after_repair": (values(lambda r: r.get("phase") == "pre"), values(lambda r: r.get("phase") == "post")),
        "all_cleft_vs_all_normal": (values(lambda r: r["group"] == "cleft"), values(lambda r: r["group"] == "normal")),
    }  # fmt: skip
    out: dict[str, Any] = {g: {"n_positive": len(a), "n_negative": len(b)} for g, (a, b) in groups.items()}
    for k in names:
        out[k] = {g: auroc([v[k] for v in a if k in v], [v[k] for v in b if k in v]) for g, (a, b) in groups.items()}
    return out


def run_nasolabial(devsets: str | Path, *, normals_with_variants: int = 24,
                   progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], NasolabialReference]:  # fmt: skip
    """Measure the development photos; returns the report (aggregates only) and the normal reference.

    Parameters
    ----------
    devsets : path
        A folder of ``devsets/rebuild.py`` with ``labels.csv``.
    normals_with_variants : int
        Normal photos (every fourth) that also get the photo changes; every cleft photo does.
    progress : callable, optional
        Called with one line per photo (its position only, no name).
    """
    root = Path(devsets)
    with open(root / "labels.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    photos, normals_changed = [], 0
    for i, row in enumerate(rows):
        changed = row["group"] == "cleft" or (normals_changed < normals_with_variants and i % 4 == 0)
        normals_changed += changed and row["group"] == "normal"
        photos.append(_photo(root, row, REPEAT_VARIANTS if changed else ()))
        if progress is not None:
            progress(f"photo {i + 1}/{len(rows)}")
    normal_rows = [p["values"] for p in photos if p["row"]["group"] == "normal" and p["values"] is not None]
    reference = NasolabialReference.from_values(
        normal_rows, source=f"{len(normal_rows)} normal development photos with a face found (children aligned as FFHQ "
        "and adults of two public sets); dlib landmarks, no correction; percentiles 0, 5, ..., 100")  # fmt: skip
    names = [k for k in sorted(reference.quantiles) if not k.endswith(("_right_icd", "_left_icd"))]
    report = {
        "photos": len(photos),
        "faces_found": sum(p["values"] is not None for p in photos),
        "graded": _graded(photos),
        "repeatability": _repeatability([p for p in photos if p["values"] is not None], normal_rows, names),
        "auroc": _aurocs(photos, names),
        "reference": reference.to_json(),
    }
    return report, reference
