"""``cleftscore serve``: a local web app for clinicians on a study database.

Modules, in data-flow order: ``settings`` (the server's options and limits), ``security``
(access token, Host check, CSRF), ``tokens`` (the stored token hash), ``uploads`` (content checks
and limits), ``jobs`` (the scoring queue: one worker thread that owns the device, job state in a
small SQLite file beside the study), ``queries`` (what pages show, read from the study),
``context`` (one app's state; GAN availability), ``schemas`` (JSON models), ``guards``
(middleware), ``pages`` and ``api`` (the routes) and ``app`` (the factory, :func:`create_app`).
"""

from __future__ import annotations

__all__: list[str] = []
