"""cleftscore: objective severity scores and heat maps for cleft lip photographs.

The pipeline runs photo -> aligned face -> normalized face -> difference heat map -> score.
See ``DESIGN.md`` in the project's shared folder and the README for the method.
"""

from __future__ import annotations

from cleftscore.errors import CleftscoreError

__all__ = ["CleftscoreError", "__version__"]
__version__ = "0.1.0"
