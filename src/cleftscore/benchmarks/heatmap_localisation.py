"""Does the heat map point at the cleft? Pixel AUROC and the pointing game, before and after issue 26.

Two maps of the mirror method are compared on the same faces:

* **before**: the score's heat map as it was drawn (no smoothing, its own units), its maximum
  taken over the whole ``"face"`` region;
* **after**: the map as it is now shown, :meth:`NormativeReference.in_normal_units` (over the
  face only, smoothed, in units of the normal faces' spread at each point).

On synthetic clefts planted on normal faces (:func:`cleftscore.benchmarks.cleft_synth.plant_cleft`)
the defect mask is the truth: pixel AUROC inside the face region, and the pointing game (is the
map's maximum over the face inside the defect?). On real cleft photos the truth is a box drawn by
hand in the aligned frame (a JSON file kept outside the repository: ``{"relative/file.png":
[x0, y0, x1, y1], ...}``); only the hit count is reported, never a per-photo number.

The reference's per-point spread is built from normal faces that are not the ones a cleft is
planted on (every ``holdout``-th normal face is kept out of it and gets the clefts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.benchmarks.cleft_synth import FaceSample, load_devset_face, plant_cleft
from cleftscore.heatmap import face_region
from cleftscore.normalize.mirror import mirror_normalize
from cleftscore.score.asymmetry import AsymmetrySettings, asymmetry_score, score_region
from cleftscore.score.reference import NormativeReference, ReferenceBuilder

__all__ = ["CLEFTS", "pointing_hit", "pixel_auroc", "run_localisation"]

#: (severity, side) of the clefts planted on each held-out normal face.
CLEFTS = ((2, "right"), (3, "left"), (4, "right"), (5, "left"), (4, "both"))


def pointing_hit(heatmap: np.ndarray, region: np.ndarray, target: np.ndarray) -> bool:
    """Whether the map's maximum over ``region`` lies inside ``target`` (all ``(S, S)``)."""
    v = np.where(region, heatmap, -np.inf)
    i = np.unravel_index(int(np.argmax(v)), v.shape)
    return bool(target[i])


def pixel_auroc(heatmap: np.ndarray, target: np.ndarray, region: np.ndarray) -> float:
    """AUROC of the map's values inside ``target`` against the rest of ``region`` (NaN when either is empty).

    P(a defect pixel is hotter than a face pixel outside it), ties counted half (the Mann-Whitney
    statistic), from the sorted outside values: every pixel counts, no subsampling.
    """
    a = np.asarray(heatmap, dtype=np.float64)[target & region]
    b = np.sort(np.asarray(heatmap, dtype=np.float64)[~target & region])
    if a.size == 0 or b.size == 0:
        return float("nan")
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (a.size * b.size))


def _map(face: np.ndarray, lm: np.ndarray, settings: AsymmetrySettings) -> tuple[float, np.ndarray]:
    """Score and map as the pipeline makes them: the mirror registered on the symmetric landmarks."""
    from cleftscore.face.symmetric import symmetric_landmarks

    r = asymmetry_score(
        face, lm, settings=settings, mirror=mirror_normalize(face, symmetric_landmarks(face, given=lm)).image
    )
    return r.score, r.heatmap


def _maps(reference: NormativeReference, heat: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
    return {"before": heat, "after": reference.in_normal_units(heat, lm)}


def run_localisation(
    normals: Sequence[FaceSample],
    *,
    devsets: Path | None = None,
    boxes: Path | None = None,
    cache: Path | None = None,
    holdout: int = 6,
    settings: AsymmetrySettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Pixel AUROC and pointing game of the map before and after, on synthetic and boxed real clefts.

    Parameters
    ----------
    normals : sequence of FaceSample
        Aligned normal faces (at least ``10 * holdout / (holdout - 1)``).
    devsets, boxes : Path, optional
        The development sets' folder and the JSON of hand-drawn boxes (aligned frame, 1024 px) of
        its cleft photos; both or neither.
    cache : Path, optional
        Folder of aligned faces (:func:`load_devset_face`).
    holdout : int
        Every ``holdout``-th normal face gets the synthetic clefts and stays out of the reference.
    settings : AsymmetrySettings, optional
        The score (default: the defaults).

    Returns
    -------
    dict
        ``synthetic``: per map, ``pointing_hits``, ``n``, ``pixel_auroc_median``; ``real``
        (with boxes): per map, ``hits`` and ``n``; and how many faces went where.
    """
    st = settings or AsymmetrySettings()
    say = progress or (lambda _line: None)
    builder = ReferenceBuilder(method="asymmetry", score="face-referenced")
    held = [f for k, f in enumerate(normals) if k % holdout == 0]
    for k, f in enumerate(normals):
        if k % holdout:
            score, heat = _map(f.image, f.landmarks, st)
            builder.add(score, heat, f.landmarks, score_region(f.landmarks, f.image.shape[0], settings=st))
    ref = builder.build(source="normal faces of the localisation benchmark", settings=st, name="benchmark")
    say(f"reference from {ref.n} normal faces; clefts planted on {len(held)}")
    synth: dict[str, dict[str, list]] = {m: {"hits": [], "auroc": []} for m in ("before", "after")}
    for f in held:
        size = f.image.shape[0]
        whole = face_region(f.landmarks, size, margin=0.0)
        for sev, side in CLEFTS:
            planted = plant_cleft(f.image, f.landmarks, severity=sev, side=side)
            _, heat = _map(planted.image, f.landmarks, st)
            for name, m in _maps(ref, heat, f.landmarks).items():
                synth[name]["hits"].append(pointing_hit(m, whole, planted.mask))
                synth[name]["auroc"].append(pixel_auroc(m, planted.mask, whole))
    out: dict[str, Any] = {
        "reference_faces": ref.n,
        "cleft_faces": len(held),
        "clefts_per_face": len(CLEFTS),
        "synthetic": {
            name: {
                "pointing_hits": int(sum(v["hits"])),
                "n": len(v["hits"]),
                "pixel_auroc_median": float(np.nanmedian(v["auroc"])),
            }
            for name, v in synth.items()
        },  # fmt: skip
    }
    if devsets is not None and boxes is not None:
        out["real"] = _real_hits(ref, devsets, boxes, cache, st)
    return out


def _real_hits(ref: NormativeReference, devsets: Path, boxes: Path, cache: Path | None,
               st: AsymmetrySettings) -> dict[str, dict[str, int]]:  # fmt: skip
    """Pointing-game hits of each map against hand-drawn boxes (counts only)."""
    drawn = {k: v for k, v in json.loads(boxes.read_text(encoding="utf-8")).items() if not k.startswith("_")}
    hits = {"before": 0, "after": 0}
    n = 0
    for rel, (x0, y0, x1, y1) in sorted(drawn.items()):
        f = load_devset_face(devsets, rel, cache)
        if f is None:
            continue
        size = f.image.shape[0]
        target = np.zeros((size, size), bool)
        target[int(y0) : int(y1), int(x0) : int(x1)] = True
        whole = face_region(f.landmarks, size, margin=0.0)
        _, heat = _map(f.image, f.landmarks, st)
        for name, m in _maps(ref, heat, f.landmarks).items():
            hits[name] += pointing_hit(m, whole, target)
        n += 1
    return {name: {"hits": int(h), "n": n} for name, h in hits.items()}
