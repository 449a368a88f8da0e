"""What one app instance holds, and whether the GAN method can run on this machine."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates

from cleftscore.errors import CleftscoreError
from cleftscore.normalize.gan import GanSettings
from cleftscore.study.db import Study
from cleftscore.web.jobs import JobQueue, ServerState
from cleftscore.web.security import Guard
from cleftscore.web.settings import WebSettings

__all__ = ["AppContext", "MethodChoice", "WebConfigError", "gan_availability", "ROIS", "ID"]

#: Regions a job may score.
ROIS = ("mouth", "face", "full")
#: A database id in a path: SQLite integers stop at 2**63.
ID = Annotated[int, PathParam(ge=1, le=2**62)]


class WebConfigError(CleftscoreError):
    """A server that must not start as configured (e.g. a public host without an access token)."""


@dataclass(frozen=True)
class MethodChoice:
    name: str
    available: bool
    reason: str


def gan_availability(gan: GanSettings | None = None) -> MethodChoice:
    """Whether the GAN method can run here: its generator (and VGG16 for the LPIPS loss) must be present.

    Parameters
    ----------
    gan : GanSettings, optional
        The settings GAN jobs will use (default: the paper's).
    """
    from cleftscore.weights import resolve_generator, resolve_vgg16

    try:
        gan = gan or GanSettings()
        resolve_generator(gan.generator)
        if gan.loss == "lpips":
            resolve_vgg16(gan.vgg16)
    except CleftscoreError as exc:
        import logging

        # The details (paths, commands) are for whoever runs the server, not for the page.
        logging.getLogger(__name__).info("GAN method not offered: %s", exc)
        return MethodChoice("gan", False, "the GAN method needs model weights that are not installed on this "
                                          "computer; whoever set up cleftscore here can install them")  # fmt: skip
    return MethodChoice("gan", True, "")


@dataclass
class AppContext:
    """Everything one app instance holds (``app.state.ctx``): no module-level state anywhere."""

    settings: WebSettings
    study: Study
    state: ServerState
    guard: Guard
    jobs: JobQueue
    templates: Jinja2Templates
    gan: MethodChoice
    #: Set when the server is asked to stop: open event streams end, so shutdown need not wait.
    closing: threading.Event = field(default_factory=threading.Event)
    #: Drawn timelines by (code, method, study fingerprint): drawing one takes seconds.
    timelines: dict[tuple[Any, ...], bytes] = field(default_factory=dict)

    def begin_shutdown(self) -> None:
        """End event streams now and let the worker stop at its next photo."""
        self.closing.set()
        self.jobs.request_stop()
