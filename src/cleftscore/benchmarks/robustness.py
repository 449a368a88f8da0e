"""Robustness of the weights-free asymmetry score to how a photo was taken and saved.

Each photo is changed in ways that leave the face as it is (grayscale, a mirror flip, JPEG at
three qualities, three smaller sizes, a tighter and a looser crop, exposure, contrast, white
balance, in-plane turns, a little blur and sensor noise; :data:`VARIANTS`). Every variant goes
through the whole path again (face found, landmarks, alignment, mirror registration, score) and
its score is compared with the original's. Changes are reported in units of the gap between
the median cleft and the median normal original score of the same run, with the photos whose
variant crosses the midpoint between the two medians.

Aligned faces (originals and variants) are cached as ``.npz`` files, so a second run with
another score only registers and scores. The report holds aggregates only (no file names of
the development sets).
"""

from __future__ import annotations

import logging
import math
import platform
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleftscore.benchmarks.cleft_synth import auroc, cache_key
from cleftscore.score.asymmetry import AsymmetrySettings, asymmetry_score

__all__ = [
    "VARIANTS",
    "AlignedVariant",
    "RobustnessPhoto",
    "change_summary",
    "devset_photos",
    "make_variant",
    "quality_summary",
    "default_scorer",
    "run_robustness",
    "shared_face_photos",
]

logger = logging.getLogger(__name__)

#: The photo changes, in report order.
VARIANTS = (
    "grayscale", "mirror_flip", "jpeg_q30", "jpeg_q50", "jpeg_q75", "side_384", "side_512", "side_768",
    "crop_tight", "crop_loose", "exposure_0.6", "exposure_1.4", "contrast_1.5", "contrast_0.7",
    "white_balance_warm", "white_balance_cool", "turn_+7", "turn_-7", "blur", "noise",
)  # fmt: skip

#: A scorer of the benchmark: aligned face, landmarks, registered mirror image -> score.
Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class RobustnessPhoto:
    """One photo of the benchmark.

    Attributes
    ----------
    path : Path
        The photo file.
    group : {"cleft", "normal"}
    source : str
        Where it comes from (a development set's name or ``"shared_faces"``); the report counts
        per source.
    key : str
        Its cache name.
    """

    path: Path
    group: str
    source: str
    key: str

    def __post_init__(self) -> None:
        if self.group not in ("cleft", "normal"):
            raise ValueError(f"group must be 'cleft' or 'normal', got {self.group!r}")


def _linear(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) / 255.0) ** 2.2


def _srgb(lin: np.ndarray) -> np.ndarray:
    return np.clip(np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _resize_long(img: np.ndarray, side: int) -> np.ndarray | None:
    import cv2

    h, w = img.shape[:2]
    if max(h, w) <= side:
        return None
    k = side / max(h, w)
    return cv2.resize(img, (max(int(round(w * k)), 1), max(int(round(h * k)), 1)), interpolation=cv2.INTER_AREA)


def _turn(img: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _crop(img: np.ndarray, fraction: float) -> np.ndarray:
    """Cut ``fraction`` of each side (> 0) or add ``-fraction`` of each side, edges replicated (< 0)."""
    import cv2

    h, w = img.shape[:2]
    dy, dx = int(round(abs(fraction) * h)), int(round(abs(fraction) * w))
    if fraction > 0:
        return np.ascontiguousarray(img[dy : h - dy, dx : w - dx])
    return cv2.copyMakeBorder(img, dy, dy, dx, dx, cv2.BORDER_REPLICATE)


def make_variant(image: np.ndarray, name: str, *, seed: int = 0) -> np.ndarray | None:
    """One photo change of :data:`VARIANTS`.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        The photo, RGB.
    name : str
        A name of :data:`VARIANTS`: ``grayscale`` (ITU-R 601 luma in all three channels),
        ``mirror_flip`` (left-right), ``jpeg_qN`` (saved at quality N), ``side_N`` (area
        downscale to a longest side of N px; None when the photo is not larger), ``crop_tight``
        (5 % cut from each side), ``crop_loose`` (10 % added to each side, edges replicated),
        ``exposure_k`` (linear light times k), ``contrast_k`` (around the mean, times k),
        ``white_balance_warm`` / ``_cool`` (linear red x1.15 and blue x0.85, or the reverse),
        ``turn_+7`` / ``turn_-7`` (degrees about the centre, edges replicated), ``blur``
        (Gaussian, sigma 1/1000 of the longest side, at least 0.7 px) and ``noise`` (Gaussian,
        sigma 4 code units, seeded).
    seed : int
        Seed of the noise.

    Returns
    -------
    (H', W', 3) ndarray of uint8, or None
        None when the change does not apply to this photo.
    """
    import cv2

    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB photo, got shape {img.shape} dtype {img.dtype}")
    fixed: dict[str, Callable[[], np.ndarray | None]] = {
        "grayscale": lambda: np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2),
        "mirror_flip": lambda: np.ascontiguousarray(img[:, ::-1]),
        "crop_tight": lambda: _crop(img, 0.05),
        "crop_loose": lambda: _crop(img, -0.10),
        "white_balance_warm": lambda: _srgb(_linear(img) * np.array([1.15, 1.0, 0.85], np.float32)),
        "white_balance_cool": lambda: _srgb(_linear(img) * np.array([0.85, 1.0, 1.15], np.float32)),
        "blur": lambda: cv2.GaussianBlur(img, (0, 0), max(max(img.shape[:2]) / 1000.0, 0.7)),
        "noise": lambda: np.clip(img + np.random.default_rng(seed).normal(0.0, 4.0, img.shape), 0, 255).astype(
            np.uint8
        ),
    }
    if name in fixed:
        return fixed[name]()
    kind, _, value = name.partition("_")
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    if kind == "jpeg":
        return _jpeg(img, int(value[1:]))
    if kind == "side":
        return _resize_long(img, int(value))
    if kind == "exposure":
        return _srgb(_linear(img) * float(value))
    if kind == "contrast":
        f = img.astype(np.float32)
        return np.clip((f - f.mean()) * float(value) + f.mean() + 0.5, 0, 255).astype(np.uint8)
    return _turn(img, float(value))  # turn_+7, turn_-7


@dataclass(frozen=True, eq=False)
class AlignedVariant:
    """What the benchmark keeps of one aligned photo (original or variant).

    Attributes
    ----------
    image : (S, S, 3) ndarray of uint8
        The aligned face.
    landmarks : (68, 2) ndarray of float64
        Its landmarks in the aligned frame.
    landmarks_original : (68, 2) ndarray of float64
        The landmarks in the (changed) photo.
    box : (4,) ndarray of float64
        The face box in the photo: left, top, right, bottom.
    """

    image: np.ndarray
    landmarks: np.ndarray
    landmarks_original: np.ndarray
    box: np.ndarray


def _aligned(photo: RobustnessPhoto, variant: str, image: np.ndarray, cache: Path | None,
             size: int) -> AlignedVariant | None:  # fmt: skip
    """The aligned variant, or None when no face is found; cached as .npz."""
    from cleftscore.errors import CleftscoreError
    from cleftscore.face import prepare_photo

    path = None if cache is None else cache / f"{photo.key}__{variant}__{size}.npz"
    if path is not None and path.is_file():
        with np.load(path) as z:
            if not z["found"]:
                return None
            return AlignedVariant(z["image"], z["landmarks"], z["landmarks_original"], z["box"])
    got = None
    try:
        p = prepare_photo(image, size=size)
        b = p.box
        got = AlignedVariant(p.aligned.image, np.asarray(p.aligned.landmarks, dtype=np.float64),
                             np.asarray(p.aligned.landmarks_original, dtype=np.float64),
                             np.array([b.left, b.top, b.right, b.bottom], dtype=np.float64))  # fmt: skip
    except (CleftscoreError, ValueError) as exc:
        logger.info("%s / %s: %s", photo.key, variant, exc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        if got is None:
            np.savez(tmp, found=False)
        else:
            np.savez(tmp, found=True, image=got.image, landmarks=got.landmarks,
                     landmarks_original=got.landmarks_original, box=got.box)  # fmt: skip
        tmp.replace(path)
    return got


def default_scorer(settings: AsymmetrySettings | None = None) -> Scorer:
    """The asymmetry score with ``settings`` (default: the defaults) on the mirror normalizer's image."""
    st = settings or AsymmetrySettings()

    def run(face: np.ndarray, lm: np.ndarray, mirror: np.ndarray) -> float:
        return asymmetry_score(face, lm, mirror=mirror, settings=st).score

    return run


def _score_photo(photo: RobustnessPhoto, variants: Sequence[str], scorer: Scorer, cache: Path | None,
                 size: int) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:  # fmt: skip
    """Scores of the original (key ``"original"``) and of each variant (NaN without a face), and the failed quality checks."""
    from cleftscore.errors import CleftscoreError
    from cleftscore.face.quality import assess_quality
    from cleftscore.face.symmetric import symmetric_landmarks
    from cleftscore.io import load_image
    from cleftscore.normalize.mirror import mirror_normalize

    out: dict[str, float] = {}
    failed: dict[str, tuple[str, ...]] = {}
    try:
        image = load_image(photo.path)
    except CleftscoreError as exc:
        logger.info("%s: %s", photo.key, exc)
        return out, failed
    seed = zlib.crc32(photo.key.encode())
    for v in ("original", *variants):
        img = image if v == "original" else make_variant(image, v, seed=seed)
        got = None if img is None else _aligned(photo, v, img, cache, size)
        out[v] = float("nan")
        if got is None:
            if v == "original":
                return out, failed
            continue
        try:
            failed[v] = assess_quality(img, tuple(got.box), got.landmarks_original).failed  # type: ignore[arg-type]
            lm = symmetric_landmarks(got.image, given=got.landmarks)  # as the normalizer does
            mirror = mirror_normalize(got.image, lm).image
            out[v] = float(scorer(got.image, got.landmarks, mirror))
        except ValueError as exc:
            logger.info("%s / %s: %s", photo.key, v, exc)
    return out, failed


def change_summary(original: Sequence[float], changed: Sequence[float], *, gap: float, midpoint: float,
                   groups: Sequence[str]) -> dict:  # fmt: skip
    """|change| of the score in units of ``gap``, and the photos that cross ``midpoint``.

    Parameters
    ----------
    original, changed : sequences of float
        Scores of the same photos before and after a change (NaN = not scored, left out).
    gap : float
        Median normal minus median cleft score (> 0).
    midpoint : float
        Halfway between the two medians.
    groups : sequence of str
        ``"cleft"`` or ``"normal"`` per photo.

    Returns
    -------
    dict
        ``n``, ``median`` and ``p90`` of ``|changed - original| / gap``, ``max``, and
        ``crossing`` (photos on the other side of the midpoint after the change) in all and per
        group.
    """
    o, c = np.asarray(original, np.float64), np.asarray(changed, np.float64)
    g = np.asarray(groups)
    ok = np.isfinite(o) & np.isfinite(c)
    if not ok.any():
        return {"n": 0}
    rel = np.abs(c[ok] - o[ok]) / gap
    cross = ok & ((o > midpoint) != (c > midpoint))
    return {
        "n": int(ok.sum()),
        "median": float(np.median(rel)),
        "p90": float(np.percentile(rel, 90)),
        "max": float(rel.max()),
        "crossing": int(cross.sum()),
        "crossing_cleft": int((cross & (g == "cleft")).sum()),
        "crossing_normal": int((cross & (g == "normal")).sum()),
    }


def _report(photos: Sequence[RobustnessPhoto], scores: Sequence[Mapping[str, float]],
            variants: Sequence[str]) -> dict:  # fmt: skip
    """Aggregates of the collected scores (see :func:`run_robustness`)."""
    keep = [i for i, s in enumerate(scores) if math.isfinite(s.get("original", float("nan")))]
    groups = [photos[i].group for i in keep]
    orig = np.asarray([scores[i]["original"] for i in keep])
    cl = orig[np.asarray(groups) == "cleft"]
    nm = orig[np.asarray(groups) == "normal"]
    if cl.size == 0 or nm.size == 0:
        raise ValueError("the benchmark needs scored cleft and normal photos")
    gap = float(np.median(nm) - np.median(cl))
    mid = float((np.median(nm) + np.median(cl)) / 2.0)
    per_source: dict[str, dict[str, int]] = {}
    for i, p in enumerate(photos):
        d = per_source.setdefault(p.source, {"photos": 0, "scored": 0})
        d["photos"] += 1
        d["scored"] += int(i in keep)
    rows = {}
    for v in variants:
        changed = [scores[i].get(v, float("nan")) for i in keep]
        rows[v] = change_summary(orig, changed, gap=gap, midpoint=mid, groups=groups)
        rows[v]["not_scored"] = int(sum(not math.isfinite(x) for x in changed))
    worst = max((r["p90"] for r in rows.values() if r.get("n")), default=float("nan"))
    return {
        "n_cleft": int(cl.size),
        "n_normal": int(nm.size),
        "median_cleft": float(np.median(cl)),
        "median_normal": float(np.median(nm)),
        "gap": gap,
        "midpoint": mid,
        "auroc_normal_above_cleft": auroc(nm, cl),
        "originals_on_wrong_side": int(((cl > mid).sum()) + ((nm <= mid).sum())),
        "photos": per_source,
        "variants": rows,
        "worst_p90": worst,
    }


def _errors(values: Sequence[float]) -> dict:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90))}


def quality_summary(photos: Sequence[RobustnessPhoto], scores: Sequence[Mapping[str, float]],
                    failed: Sequence[Mapping[str, tuple[str, ...]]], *, gap: float) -> dict:  # fmt: skip
    """What the quality gate flags and how far the score errs on flagged and unflagged photos.

    Parameters
    ----------
    photos : sequence of RobustnessPhoto
    scores : sequence of mapping
        Per photo, the score of the original and of each variant.
    failed : sequence of mapping
        Per photo, the failed checks of the original and of each variant
        (:attr:`cleftscore.face.quality.PhotoQuality.failed`).
    gap : float
        The cleft-vs-normal gap of the run.

    Returns
    -------
    dict
        ``originals``: per source the photos and how many each check flags; ``variants``: per
        variant how many each check flags; ``error_flagged`` / ``error_unflagged``: the
        |score change| / gap of the variants that fail / pass the gate (median, p90), also per
        check (``error_by_check``).
    """
    from cleftscore.face.quality import CHECKS

    originals: dict[str, dict] = {}
    per_variant: dict[str, dict[str, int]] = {}
    flagged, unflagged = [], []
    by_check: dict[str, list[float]] = {c: [] for c in CHECKS}
    for p, sc, fl in zip(photos, scores, failed, strict=True):
        if "original" not in fl:
            continue
        o = originals.setdefault(p.source, {"photos": 0, "flagged": 0, **dict.fromkeys(CHECKS, 0)})
        o["photos"] += 1
        o["flagged"] += int(bool(fl["original"]))
        for c in fl["original"]:
            o[c] += 1
        for v, checks in fl.items():
            if v == "original":
                continue
            pv = per_variant.setdefault(v, {"photos": 0, "flagged": 0})
            pv["photos"] += 1
            pv["flagged"] += int(bool(checks))
            for c in checks:
                pv[c] = pv.get(c, 0) + 1
            err = abs(sc.get(v, float("nan")) - sc["original"]) / gap
            if not math.isfinite(err):
                continue
            (flagged if checks else unflagged).append(err)
            for c in checks:
                by_check[c].append(err)
    return {
        "originals": originals,
        "variants": per_variant,
        "error_flagged": _errors(flagged),
        "error_unflagged": _errors(unflagged),
        "error_by_check": {c: _errors(v) for c, v in by_check.items() if v},
    }


def run_robustness(
    photos: Sequence[RobustnessPhoto],
    *,
    scorer: Scorer | None = None,
    variants: Sequence[str] = VARIANTS,
    cache: Path | None = None,
    size: int = 1024,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Score every photo and each of its variants and report how far the score moves.

    Parameters
    ----------
    photos : sequence of RobustnessPhoto
    scorer : Scorer, optional
        Default: :func:`default_scorer` (the default asymmetry score).
    variants : sequence of str
        Names of :data:`VARIANTS`.
    cache : Path, optional
        Folder of aligned faces (``<key>__<variant>__<size>.npz``), read when present, written
        otherwise.
    size : int
        Side of the aligned faces (the pipeline's default is 1024; the score works at 512).

    Returns
    -------
    dict
        Aggregates only: the cleft and normal medians, the gap and midpoint, the AUROC of the
        originals, photos per source, and per variant the ``n``, ``median``, ``p90`` and
        ``max`` of ``|change| / gap`` and the photos crossing the midpoint (in all, clefts,
        normals), with ``worst_p90`` over the variants.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    run = scorer or default_scorer()
    t0 = time.perf_counter()
    scores, failed = [], []
    for k, p in enumerate(photos):
        sc, fl = _score_photo(p, variants, run, cache, size)
        scores.append(sc)
        failed.append(fl)
        if progress is not None:
            progress(f"{k + 1}/{len(photos)} photos")
    report = {"benchmark": "robustness: the asymmetry score of a photo and of its changed copies (aggregates only)"}
    report.update(_report(photos, scores, variants))
    report["quality_gate"] = quality_summary(photos, scores, failed, gap=report["gap"])
    report["environment"] = {"python": platform.python_version(), "seconds": time.perf_counter() - t0}
    return report


def _spaced(rows: list[dict[str, str]], n: int | None) -> list[dict[str, str]]:
    rows = sorted(rows, key=lambda r: r["file"])
    if n is not None and len(rows) > n:
        rows = [rows[int(k)] for k in np.linspace(0, len(rows) - 1, n).round()]
    return rows


def devset_photos(root: Path, *, normals_per_set: int | None = None,
                  clefts_per_set: int | None = None) -> list[RobustnessPhoto]:  # fmt: skip
    """The development photos of the benchmark: every unilateral cleft photo and the normal ones.

    Parameters
    ----------
    root : Path
        Folder made by ``rebuild.py`` (with ``labels.csv``).
    normals_per_set : int, optional
        This many evenly spaced normal photos of each normal set (default: all).
    clefts_per_set : int, optional
        This many evenly spaced photos of each cleft set (default: all).

    Notes
    -----
    The bilateral cleft is left out: it is its own mirror image, so the score does not see it
    and it sits among the normal faces.
    """
    import csv

    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["set"] != "cleft_bilateral"]
    by_set: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        by_set.setdefault((r["group"], r["set"]), []).append(r)
    out = []
    for (group, name), rs in sorted(by_set.items()):
        n = clefts_per_set if group == "cleft" else normals_per_set
        out += [RobustnessPhoto(root / r["file"], group, name, cache_key(r["file"])) for r in _spaced(rs, n)]
    return out


def shared_face_photos(folder: Path) -> list[RobustnessPhoto]:
    """The photos of a folder in which exactly one face is found (normal faces, source ``"shared_faces"``)."""
    from cleftscore.errors import CleftscoreError
    from cleftscore.face.detect import detect_faces
    from cleftscore.io import find_images, load_image

    out = []
    for p in find_images(folder):
        try:
            n = len(detect_faces(load_image(p)))
        except (CleftscoreError, ValueError) as exc:
            logger.info("%s: %s", p.name, exc)
            continue
        if n == 1:
            out.append(RobustnessPhoto(p, "normal", "shared_faces", f"faces__{p.stem}"))
    return out
