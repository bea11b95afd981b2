"""Editor tokens: random, shown once, stored only as a SHA-256 digest.

A token carries 256 random bits, so a fast hash is enough: there is nothing to guess,
and a leaked database holds no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from .brokers.base import TokenStore
from .items import now_iso

TOKEN_PREFIX = "tkr_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokenError(
            "a token name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


async def create_token(tokens: TokenStore, name: str) -> str:
    """Create and return a new token for `name`; the caller shows it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await tokens.add(check_name(name), digest(token), now_iso())
    return token


async def editor_for(tokens: TokenStore, authorization: str | None) -> str | None:
    """The editor an `Authorization: Bearer` header belongs to, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return await tokens.owner(digest(token))
