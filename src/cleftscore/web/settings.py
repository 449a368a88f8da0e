"""The web server's options and limits, checked when they are built."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleftscore.normalize.gan import GanSettings

__all__ = ["WebSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    """Everything :func:`cleftscore.web.app.create_app` needs.

    Parameters
    ----------
    db : Path
        The study database file.
    host, port : str, int
        Where the server listens; they also make the Host headers it accepts.
    token_hash : str or None
        SHA-256 (hex) of the access token; required for a host that is not loopback.
    max_file_bytes, max_files, max_pixels : int
        Upload limits: bytes per photo, photos per upload, width x height per photo.
    size : int or None
        Aligned face size of every job (None: the method's default).
    detector : str
        Face detector of every job.
    cache_dir : Path or None
        GAN normalization cache.
    start_worker : bool
        Start the scoring thread (tests that only read pages may leave it off).
    extra_hosts : tuple of str
        More Host header names to answer (e.g. the machine's name when binding 0.0.0.0).
    gan : GanSettings or None
        Generator, steps, loss and device of GAN jobs (None: the paper's defaults).
    session_hours : float
        How long a browser's login lasts (servers with an access token).
    reference : Path or None
        A normative reference JSON (``cleftscore reference build``): jobs, the quick look and
        the pages place the scores of its method and score column against it; other scores keep
        the shipped reference where one fits (None: the shipped one only).
    """

    db: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token_hash: str | None = None
    max_file_bytes: int = 25_000_000
    max_files: int = 20
    max_pixels: int = 40_000_000
    size: int | None = None
    detector: str = "hog"
    cache_dir: Path | None = None
    start_worker: bool = True
    extra_hosts: tuple[str, ...] = ()
    gan: GanSettings | None = None
    session_hours: float = 12.0
    reference: Path | None = None

    def reference_path(self, method: str, score: str) -> str | None:
        """``reference`` when it was built for this method and score column, else None."""
        if self.reference is None:
            return None
        from cleftscore.score.reference import load_reference

        ref = load_reference(str(self.reference))
        return str(self.reference) if (ref.method, ref.score) == (method, score) else None

    def reference_for(self, method: str, score: str) -> Any:
        """The NormativeReference the scores of this method and score column are placed against, or None."""
        from cleftscore.score.reference import reference_for

        return reference_for(method, score, self.reference_path(method, score))

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not self.session_hours > 0:
            raise ValueError(f"session_hours must be > 0, got {self.session_hours}")
        for name in ("max_file_bytes", "max_files", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.token_hash is not None and (
            len(self.token_hash) != 64 or set(self.token_hash) - set("0123456789abcdef")
        ):
            raise ValueError("token_hash must be a SHA-256 hex digest")

    @property
    def gan_settings(self) -> GanSettings:
        return self.gan if self.gan is not None else GanSettings()

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Host header values (without port) the server answers; anything else may be DNS rebinding."""
        hosts = {"127.0.0.1", "localhost", "[::1]", "::1"}
        if self.host not in ("0.0.0.0", "::"):  # any address it binds, loopback ones too (127.0.0.2)
            hosts.add(self.host.lower() if ":" not in self.host else f"[{self.host.strip('[]').lower()}]")
        hosts.update(h.lower() for h in self.extra_hosts)
        return frozenset(hosts)
