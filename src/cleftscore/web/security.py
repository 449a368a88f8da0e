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
from dataclasses import dataclass, field

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
    """

    allowed_hosts: frozenset[str]
    token_hash: str | None = None
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _sessions: set[str] = field(default_factory=set)

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

    def open_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        self._sessions.add(sid)
        return sid

    def authorized(self, *, cookie: str | None, bearer: str | None) -> bool:
        """Whether a request may go on: no token needed, a live session cookie, or the bearer token."""
        if self.token_hash is None:
            return True
        if cookie is not None and cookie in self._sessions:
            return True
        return bearer is not None and self.token_ok(bearer)
