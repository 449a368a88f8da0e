"""Who may talk to the server: the access token, the Host check and CSRF tokens.

- **Access token** (only for a host that is not loopback): made on first start, shown once, kept
  as its SHA-256 in the server's state file. A browser presents it once on ``/login`` and gets a
  session cookie; scripts send ``Authorization: Bearer TOKEN``.
- **Host check**: a request whose ``Host`` header is not one of the server's names is refused,
  so a web page on another site cannot reach the server through DNS rebinding.
- **CSRF**: every state-changing request carries the server's CSRF token (``X-CSRF-Token`` header
  or ``csrf`` form field). Pages embed it; another site cannot read it, because the Host check
  and the same-origin policy keep our pages out of its reach.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Guard", "hash_token", "new_token", "SAFE_METHODS", "SESSION_COOKIE", "CSRF_HEADER", "CSRF_FIELD"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "cleftscore_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


def new_token() -> str:
    """A fresh access token (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Guard:
    """One server's secrets: its CSRF token, the access token's hash and the live sessions.

    Parameters
    ----------
    allowed_hosts : frozenset of str
        Host header names (lower case, without port) the server answers.
    token_hash : str or None
        SHA-256 of the access token; None means no token is asked for (loopback only).
    session_seconds : float
        How long a login lasts (a session cookie older than this is refused).
    login_attempts : int
        Logins one client may try per ``login_window`` seconds; more are refused (429).
    login_window : float
    clock : callable
        Seconds, monotonic (tests pass their own).
    """

    allowed_hosts: frozenset[str]
    token_hash: str | None = None
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    session_seconds: float = 12 * 3600.0
    login_attempts: int = 10
    login_window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, float] = field(default_factory=dict)
    _logins: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        host = host_header.strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed_hosts

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf_token.encode())

    def token_ok(self, token: str | None) -> bool:
        if self.token_hash is None:
            return True
        return token is not None and hmac.compare_digest(hash_token(token), self.token_hash)

    def origin_ok(self, origin: str, *, host_header: str | None, scheme: str) -> bool:
        """Whether an ``Origin`` header is this server itself: the same scheme, host and port.

        ``null`` (privacy-sensitive contexts) is let through: the CSRF token still guards it.
        """
        if origin == "null":
            return True
        if not host_header:
            return False
        try:
            got, own = urlsplit(origin), urlsplit(f"{scheme}://{host_header.strip()}")
            got_port, own_port = got.port, own.port
        except ValueError:
            return False
        default = {"http": 80, "https": 443}.get(scheme)
        return (
            got.scheme == scheme
            and (got.hostname or "") == (own.hostname or "")
            and (got_port or default) == (own_port or default)
            and not got.path.strip("/")
            and self.host_ok(host_header)
        )

    def login_allowed(self, client: str) -> bool:
        """Count a login attempt of ``client``; False once it tried too often in the window."""
        now = self.clock()
        with self._lock:
            tries = self._logins.setdefault(client, deque())
            while tries and now - tries[0] > self.login_window:
                tries.popleft()
            if len(tries) >= self.login_attempts:
                return False
            tries.append(now)
            return True

    def open_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            # Forget expired sessions, so the table cannot grow without end.
            for old in [s for s, until in self._sessions.items() if until <= now]:
                del self._sessions[old]
            self._sessions[sid] = now + self.session_seconds
        return sid

    def close_session(self, sid: str | None) -> None:
        """Log out: the session cookie stops working at once."""
        if sid is not None:
            with self._lock:
                self._sessions.pop(sid, None)

    def authorized(self, *, cookie: str | None, bearer: str | None) -> bool:
        """Whether a request may go on: no token needed, a live session cookie, or the bearer token."""
        if self.token_hash is None:
            return True
        if cookie is not None:
            with self._lock:
                until = self._sessions.get(cookie)
            if until is not None and self.clock() < until:
                return True
        return bearer is not None and self.token_ok(bearer)
