"""cleftscore: objective severity scores and heat maps for cleft lip photographs.

The pipeline runs photo -> aligned face -> normalized face -> difference heat map -> score.
See ``DESIGN.md`` in the project's shared folder and the README for the method.
"""

from __future__ import annotations

from cleftscore.errors import CleftscoreError

__all__ = ["CleftscoreError", "__version__"]
__version__ = "0.1.0"

_PIPELINE_NAMES = ("score_photos", "rescore_run", "PipelineSettings", "GanSettings", "PhotoResult")


def __getattr__(name: str):  # lazy: importing cleftscore must not import torch
    if name in _PIPELINE_NAMES:
        from cleftscore import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'cleftscore' has no attribute {name!r}")
