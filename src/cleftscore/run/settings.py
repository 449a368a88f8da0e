"""What a run is asked to do (:class:`PipelineSettings`) and whom it tells (:class:`ProgressHooks`)."""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cleftscore.normalize import METHODS
from cleftscore.normalize.gan import GanSettings
from cleftscore.score.paper import ScoreSettings

if TYPE_CHECKING:
    from cleftscore.run.record import PhotoResult

__all__ = ["PipelineSettings", "ProgressHooks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSettings:
    """Every knob that produces a score; written to ``result.json`` and the CSV.

    Parameters
    ----------
    method : {"gan", "asymmetry"}
        Normalizer: the paper's StyleGAN2 inversion + adaptation, or the face's own mirror.
    size : int or None
        Side of the aligned face in pixels; ``None`` means the generator's resolution for the
        GAN method and 1024 for the asymmetry method.
    detector : {"hog", "haar"}
        Face detector.
    score : ScoreSettings
        Region, difference metric, colour space and erosion.
    gan : GanSettings
        GAN settings (ignored by the asymmetry method).
    seed : int
        Seed of every random draw (noise maps, w perturbation).
    reference : str or None
        A normative reference JSON (``cleftscore reference build``) that every score is placed
        against; None: the shipped one where it fits the method and score (see
        :func:`cleftscore.score.reference.reference_for`).
    """

    method: str = "gan"
    size: int | None = None
    detector: str = "hog"
    score: ScoreSettings = field(default_factory=ScoreSettings)
    gan: GanSettings = field(default_factory=GanSettings)
    seed: int = 0
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.size is not None and (self.size < 16 or self.size & (self.size - 1)):
            raise ValueError(f"size must be a power of two >= 16, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every setting."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineSettings:
        """The settings :meth:`to_dict` wrote (e.g. a record's ``settings``), checked again.

        Settings a record does not name take their defaults (records written before they
        existed); names this version does not know are dropped.

        Raises
        ------
        ValueError, TypeError
            When a value is malformed.
        """
        return _build(cls, data)


def _build(kind: type, data: Mapping[str, Any]) -> Any:
    """A (nested) settings dataclass from its ``asdict`` form: nested records rebuilt, lists back to tuples."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{kind.__name__} settings must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if not f.init or f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = _build(hint, value)  # type: ignore[arg-type]
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return kind(**values)


@dataclass
class ProgressHooks:
    """Callbacks the CLI passes to show progress; every one is optional.

    ``photo_done(result)`` after each photo is finished (scored, failed or, in ``rescore``,
    kept as it was);
    ``gan_start(n_photos, total_steps)`` once before the GAN starts;
    ``gan_step(done_steps)`` as GAN steps are issued (batch-level, inversion + adaptation; a
    negative count takes back the steps of an attempt that ran out of GPU memory);
    ``gan_grow(extra_steps)`` when the planned total changes (a split batch adds a batch's
    steps; photos that turned out cached or unusable take theirs back);
    ``message(text)`` for notes and warnings.

    ``photo_done`` (and ``message``, for a cache write that failed) may be called from the
    worker thread that writes a GAN batch's outputs while the next batch runs; one photo at a
    time, in input order (also when photos are scored in several processes).
    """

    photo_done: Callable[[PhotoResult], None] | None = None
    gan_start: Callable[[int, int], None] | None = None
    gan_step: Callable[[int], None] | None = None
    gan_grow: Callable[[int], None] | None = None
    message: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        """Tell ``message``, or the log when there is no such hook."""
        if self.message is not None:
            self.message(text)
        else:
            log.info(text)

    def done(self, res: PhotoResult) -> None:
        """Tell ``photo_done`` that a photo is finished."""
        if self.photo_done is not None:
            self.photo_done(res)
