"""The access token of a server reachable from other machines: made once, kept only as a hash."""

from __future__ import annotations

from dataclasses import dataclass

from cleftscore.web.jobs import ServerState
from cleftscore.web.security import hash_token, new_token

__all__ = ["TokenSetup", "ensure_token", "TOKEN_KEY"]

TOKEN_KEY = "access_token_sha256"


@dataclass(frozen=True)
class TokenSetup:
    """The hash to check requests against; ``new`` is the token itself when it was just made (show it once)."""

    token_hash: str
    new: str | None


def ensure_token(state: ServerState, *, renew: bool = False) -> TokenSetup:
    """The stored token's hash, or a new token when there is none yet (or ``renew``)."""
    stored = state.get_meta(TOKEN_KEY)
    if stored is not None and not renew:
        return TokenSetup(stored, None)
    token = new_token()
    state.set_meta(TOKEN_KEY, hash_token(token))
    return TokenSetup(hash_token(token), token)
