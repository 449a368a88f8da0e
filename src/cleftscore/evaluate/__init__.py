"""How well a run's scores agree with human ratings (``cleftscore evaluate``) and calibration.

- :mod:`~cleftscore.evaluate.ratings`: the ratings file and matching its names to the photos.
- :mod:`~cleftscore.evaluate.statistics`: Pearson and Spearman with bootstrap intervals.
- :mod:`~cleftscore.evaluate.photos`: a run folder's scored photos and their mirror image.
- :mod:`~cleftscore.evaluate.grid`: the paper's Table 1 grid for a run folder.
- :mod:`~cleftscore.evaluate.markdown` and :mod:`~cleftscore.evaluate.files`: its text and files.
- :mod:`~cleftscore.evaluate.calibrate`: calibrated columns written back into a run folder.
"""
