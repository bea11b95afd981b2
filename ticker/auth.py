"""Tokens: random, shown once, stored only as a SHA-256 digest, each with its roles,
its scope of editions and an optional expiry (see `roles`).

A token carries 256 random bits, so a fast hash is enough: there is nothing to guess,
and a leaked database holds no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .audit import Request as AuditRequest
from .audit import for_operation
from .brokers.base import TokenRecord, TokenStore
from .items import now_iso
from .roles import (
    ROLES,
    Principal,
    RoleError,
    expired,
    parse_editions,
    parse_expiry,
    parse_roles,
)

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


class Unauthenticated(Exception):
    """No usable token: none, unknown, revoked or expired; the message says which."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # missing, unknown, revoked, expired


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(tokens: TokenStore, name: str, **scope: object) -> str:
    """Create and return a new token for `name`; the caller shows it once. `scope` is
    passed to `TokenStore.add` (roles, editions, expires, audit); without roles the
    token is one of the legacy kind (TICKER_LEGACY_TOKEN_ROLE)."""
    token = new_secret()
    await tokens.add(check_name(name), digest(token), now_iso(), **scope)  # type: ignore[arg-type]
    return token


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer` header, if it looks like one of ours."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return token


async def editor_for(tokens: TokenStore, authorization: str | None) -> str | None:
    """The editor an `Authorization: Bearer` header belongs to, or None."""
    token = bearer(authorization)
    return None if token is None else await tokens.owner(digest(token))


async def authenticate(
    tokens: TokenStore,
    authorization: str | None,
    *,
    legacy_roles: tuple[str, ...],
    now: datetime,
) -> tuple[Principal, TokenRecord]:
    """The holder of the token in the header, with one read of the store; raises
    Unauthenticated saying why not."""
    token = bearer(authorization)
    if token is None:
        raise Unauthenticated(
            "an editor token is required: Authorization: Bearer <token>", "missing"
        )
    record = await tokens.lookup(digest(token))
    return principal_of(record, legacy_roles=legacy_roles, now=now), record  # type: ignore[arg-type]


def principal_of(
    record: TokenRecord | None, *, legacy_roles: tuple[str, ...], now: datetime
) -> Principal:
    """The rules of a stored token, pure: unknown, revoked or expired is refused."""
    if record is None:
        raise Unauthenticated("unknown token: Authorization: Bearer <token>", "unknown")
    if record.revoked:
        raise Unauthenticated("token revoked", "revoked")
    if expired(record.expires, now):
        raise Unauthenticated(f"token expired (at {record.expires})", "expired")
    roles = record.roles if record.roles is not None else legacy_roles
    return Principal(record.name, frozenset(roles), record.editions, record.expires)


# --- managing tokens: shared by `ticker token` and the admin API ---------------------------


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """What a new token may do: checked by `token_spec`, stored by `issue`."""

    roles: tuple[str, ...]
    editions: tuple[str, ...] | None
    expires: str | None


def token_spec(
    roles: Any, editions: Any, expires: Any, *, known: tuple[str, ...], now: datetime
) -> TokenSpec:
    """Roles (`editor`, `admin,editor` or a list), a scope (`en,ar`, a list, `all` or
    None) and an expiry (`90d`, `12h`, an ISO date, or None). Raises RoleError naming
    the field."""
    if not isinstance(roles, str | list):
        raise RoleError("role", f"one or more of {', '.join(ROLES)}")
    parsed = parse_roles(roles)
    if editions is not None and not isinstance(editions, str | list):
        raise RoleError("editions", "a list of edition codes, or 'all'")
    scope = parse_editions(editions, known, parsed)
    if expires is not None and not isinstance(expires, str):
        raise RoleError("expires", "a duration like 90d or 12h, or an ISO 8601 date")
    return TokenSpec(tuple(sorted(parsed)), scope, parse_expiry(expires, now))


async def issue(tokens: TokenStore, name: str, spec: TokenSpec, by: AuditRequest) -> str:
    """Create a token with its audit entry; the secret is returned once."""
    check_name(name)
    changes: dict[str, list[Any]] = {
        "roles": [None, list(spec.roles)],
        "editions": [None, None if spec.editions is None else list(spec.editions)],
        "expires": [None, spec.expires],
    }
    entry = for_operation("token.created", name, by, changes)
    return await create_token(
        tokens, name, roles=spec.roles, editions=spec.editions, expires=spec.expires, audit=entry
    )


async def revoke(tokens: TokenStore, name: str, by: AuditRequest) -> bool:
    return await tokens.revoke(name, audit=for_operation("token.revoked", name, by, {}))


async def rotate(tokens: TokenStore, name: str, by: AuditRequest) -> str | None:
    """A new secret for the same name, roles and scope; None when there is no such token."""
    token = new_secret()
    done = await tokens.rotate(
        name, digest(token), audit=for_operation("token.rotated", name, by, {})
    )
    return token if done else None


async def migrate(
    tokens: TokenStore, roles: tuple[str, ...], editions: tuple[str, ...] | None, by: AuditRequest
) -> list[str]:
    """Give every token made before roles existed these roles and this scope, each with
    its audit entry; the names of the tokens changed."""
    changed = []
    for record in await tokens.records():
        if record.roles is not None:
            continue
        changes: dict[str, list[Any]] = {
            "roles": [None, list(roles)],
            "editions": [None, None if editions is None else list(editions)],
        }
        entry = for_operation("token.migrated", record.name, by, changes)
        if await tokens.migrate(record.name, roles, editions, audit=entry):
            changed.append(record.name)
    return changed


def describe(record: TokenRecord, legacy_roles: tuple[str, ...]) -> dict[str, Any]:
    """A token as the API and `ticker token list` show it: never its digest."""
    return {
        "name": record.name,
        "roles": sorted(record.roles if record.roles is not None else legacy_roles),
        "editions": None if record.editions is None else list(record.editions),
        "expires": record.expires,
        "created": record.created,
        "last_used": record.last_used,
        "legacy": record.roles is None,
    }
