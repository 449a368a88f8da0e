"""Every picture and plot, and the files a clinician opens, from arrays and records.

- :mod:`~cleftscore.report.pictures`: false colour, overlays, panels, colour bars, thumbnails;
- :mod:`~cleftscore.report.dynamics`: the adaptation-dynamics curve and reappearance strip;
- :mod:`~cleftscore.report.scatter`: scores against ratings (``cleftscore evaluate``);
- :mod:`~cleftscore.report.study_plots`: a patient's timeline and the cohort's before/after plot;
- :mod:`~cleftscore.report.writers` and :mod:`~cleftscore.report.html`: the CSV and the
  self-contained ``report.html``.

Report comes before the run stage (it draws from arrays, the run folder calls it), so nothing
here imports ``run/``, ``evaluate/`` or ``study/``.
"""
