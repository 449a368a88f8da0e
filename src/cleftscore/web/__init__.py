"""``cleftscore serve``: a local web app for clinicians on a study database.

Modules, in data-flow order: ``settings`` (the server's limits and options), ``security``
(access token, Host check, CSRF), ``uploads`` (content checks and limits), ``jobs`` (the
scoring queue: one worker thread that owns the device, job state in a small SQLite file beside
the study) and ``app`` (the FastAPI factory: pages and JSON endpoints).
"""

from __future__ import annotations

__all__: list[str] = []
