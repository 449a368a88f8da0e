"""Scores from a heat map: the paper's S, the face-referenced asymmetry score, their references.

- :mod:`~cleftscore.score.paper`: :class:`ScoreSettings`, the paper's S over a region and the
  :class:`PhotoScore` record;
- :mod:`~cleftscore.score.asymmetry`: the face-referenced asymmetry score (given a mirror image,
  never building one);
- :mod:`~cleftscore.score.reference`: its normative reference on normal faces;
- :mod:`~cleftscore.score.calibration`: an optional linear map to a rating scale.
"""
