"""Normalizers: aligned faces in, normalization records out.

A normalizer makes, for each aligned face, the "normal" face it is compared with. Every caller
(the pipeline, ``evaluate``, benchmarks) goes through the one interface :class:`Normalizer`:

- :class:`~cleftscore.normalize.mirror.MirrorNormalizer` (``asymmetry``): the face's own
  mirror image, registered by mirrored landmark pairs; refuses faces turned too far.
- :class:`~cleftscore.normalize.gan.GanNormalizer` (``gan``): StyleGAN2 inversion and
  adaptation (paper Alg. 1 and 2), with its on-disk cache inside.

A new normalizer is a class with the attributes and methods of :class:`Normalizer`, plus a
branch in :func:`make_normalizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from cleftscore.face.align import AlignedFace

__all__ = ["METHODS", "GanProgress", "Measure", "Normalization", "Normalizer", "make_normalizer"]

#: Normalizer names, as ``--method`` takes them.
METHODS = ("gan", "asymmetry")


@dataclass(frozen=True)
class Measure:
    """One extra number about a photo (besides the score S), with what it means.

    ``stage`` says who makes it: ``"normalization"`` measures are kept by ``rescore``,
    ``"score"`` measures are recomputed with the score.
    """

    value: float
    definition: str
    stage: str = "normalization"

    def __post_init__(self) -> None:
        if self.stage not in ("normalization", "score"):
            raise ValueError(f"stage must be 'normalization' or 'score', got {self.stage!r}")
        object.__setattr__(self, "value", float(self.value))


def _check_face_image(name: str, image: np.ndarray | None, shape: tuple[int, ...] | None) -> None:
    if image is None:
        return
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an (S, S, 3) uint8 image, got {image.shape} {image.dtype}")
    if shape is not None and image.shape != shape:
        raise ValueError(f"{name} is {image.shape}, the normalized face is {shape}")


@dataclass(frozen=True, eq=False)
class Normalization:
    """The normalized face of one aligned face, or why there is none.

    Attributes
    ----------
    image : (S, S, 3) ndarray of uint8 or None
        The normalized face in the aligned frame; None when ``error`` says why not.
    error : str
        One line naming the problem (empty when ``image`` is set).
    inverted : (S, S, 3) ndarray of uint8 or None
        GAN: the inversion before adaptation.
    snapshots : dict of int -> (S, S, 3) uint8
        GAN: intermediate adaptation steps.
    measures : dict of str -> Measure
        Extra numbers (mirror: ``landmark_asymmetry_px``).
    info : dict
        How it ran (GAN: steps, step mode, final loss, batch), for ``result.json``.
    timings : dict of str -> float
        Seconds per stage.
    cached : bool
        True when it came from the cache.
    """

    image: np.ndarray | None
    error: str = ""
    inverted: np.ndarray | None = None
    snapshots: Mapping[int, np.ndarray] = field(default_factory=dict)
    measures: Mapping[str, Measure] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    cached: bool = False

    def __post_init__(self) -> None:
        if (self.image is None) == (not self.error):
            raise ValueError("a Normalization has either an image or an error, not both or neither")
        if "\n" in self.error:
            raise ValueError("the error must be one line")
        _check_face_image("image", self.image, None)
        shape = None if self.image is None else self.image.shape
        _check_face_image("inverted", self.inverted, shape)
        for step, snap in self.snapshots.items():
            _check_face_image(f"snapshot {step}", snap, shape)

    @property
    def ok(self) -> bool:
        return self.image is not None


class Normalizer(Protocol):
    """What every normalizer offers.

    Attributes
    ----------
    name : str
        The method name written to records (``gan``, ``asymmetry``).
    batch_size : int
        Faces per :meth:`normalize` call that use the hardware well (1 for CPU methods).
    resolution : int or None
        The aligned face size it needs, or None for any size.
    """

    name: str
    batch_size: int
    resolution: int | None

    def describe(self) -> dict[str, Any]:
        """What produced the normalizations (weights, checksums, device), for records."""
        ...

    def cached(self, face: AlignedFace) -> Normalization | None:
        """The stored normalization of ``face``, or None (then call :meth:`normalize`)."""
        ...

    def plan(self, n_faces: int) -> None:
        """Told once, before the first :meth:`normalize`, how many faces may still come."""
        ...

    def normalize(self, faces: Sequence[AlignedFace]) -> list[Normalization]:
        """One record per face, in order; a face that cannot be normalized gets an error."""
        ...

    def close(self) -> None:
        """Called after the last :meth:`normalize` (progress totals are settled here)."""
        ...


@dataclass
class GanProgress:
    """Callbacks of the GAN normalizer (all optional): see ``pipeline.ProgressHooks``."""

    start: Callable[[int, int], None] | None = None
    step: Callable[[int], None] | None = None
    grow: Callable[[int], None] | None = None
    message: Callable[[str], None] | None = None


def make_normalizer(
    method: str,
    *,
    gan: Any = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: GanProgress | None = None,
) -> Normalizer:
    """The normalizer called ``method``.

    Parameters
    ----------
    method : {"gan", "asymmetry"}
        Normalizer name.
    gan : GanSettings, optional
        GAN settings (``method="gan"`` only).
    seed : int
        Seed of every random draw.
    cache_dir : path, optional
        GAN cache folder (default :func:`cleftscore.paths.normalization_cache_dir`).
    progress : GanProgress, optional
        GAN progress callbacks.

    Raises
    ------
    ValueError
        Unknown method.
    CleftscoreError
        GAN weights missing or unreadable.
    """
    if method == "asymmetry":
        from cleftscore.normalize.mirror import MirrorNormalizer

        return MirrorNormalizer()
    if method == "gan":
        from cleftscore.normalize.gan import GanNormalizer, GanSettings

        return GanNormalizer(gan or GanSettings(), seed=seed, cache_dir=cache_dir, progress=progress or GanProgress())
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
