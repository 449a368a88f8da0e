"""cleftscore: objective severity scores and heat maps for cleft lip photographs.

The pipeline runs photo -> aligned face -> normalized face -> difference heat map -> score.
See ``DESIGN.md`` in the project's shared folder and the README for the method.

The names below load lazily, so ``import cleftscore`` stays light (no torch):

- :func:`score_photos`: photos or folders in, one :class:`PhotoResult` each (and a run folder);
- :class:`PhotoRecord`: what one photo produced, as its ``result.json`` says (a
  :class:`PhotoResult` is one, with the photo's arrays when they were kept);
- :func:`rescore_run`: a finished run folder scored again with other :class:`ScoreSettings`;
- :class:`PipelineSettings`, :class:`GanSettings`, :class:`ScoreSettings`,
  :class:`DifferenceSettings`: every setting, as typed records;
- :func:`score_photo`: two aligned arrays and a mask in, score and heat map out;
- :func:`score_face_referenced`: an aligned face, its mirror image and landmarks in, the
  asymmetry method's face-referenced score and heat map out.
"""

from __future__ import annotations

from typing import Any

from cleftscore.errors import CleftscoreError

__version__ = "0.1.0"

#: Public name -> module that defines it.
_LAZY = {
    "score_photos": "cleftscore.run.pipeline",
    "rescore_run": "cleftscore.run.rescore",
    "PipelineSettings": "cleftscore.run.settings",
    "PhotoResult": "cleftscore.run.record",
    "PhotoRecord": "cleftscore.run.record",
    "ProgressHooks": "cleftscore.run.settings",
    "GanSettings": "cleftscore.normalize.gan",
    "ScoreSettings": "cleftscore.score.paper",
    "PhotoScore": "cleftscore.score.paper",
    "score_photo": "cleftscore.score.paper",
    "score_face_referenced": "cleftscore.score.paper",
    "DifferenceSettings": "cleftscore.heatmap",
}

__all__ = ["CleftscoreError", "__version__", *_LAZY]


def lazy_names(package: str, table: dict[str, str]) -> tuple[Any, Any]:
    """``__getattr__`` and ``__dir__`` for a package whose public names live in other modules.

    ``table`` maps each public name to the module that defines it; the module is imported on
    first use, so importing the package stays light.
    """

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(module), name)

    def dir_() -> list[str]:
        return sorted(__all__ if package == "cleftscore" else table)

    return getattr_, dir_


# lazy: importing cleftscore must not import torch
__getattr__, __dir__ = lazy_names("cleftscore", _LAZY)
