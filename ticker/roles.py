"""Who may do what: roles, the editions a token works in, and when it stops working.

A token holds a set of roles:

- `editor` posts, corrects and withdraws items in the editions of its scope (anyone's
  items there: a desk shares its editions);
- `chief` does that in every edition, whatever the scope;
- `admin` manages tokens (and other settings of the service) and posts nothing unless
  the set also holds `editor` or `chief` (`--role admin,editor`).

Pure rules, no I/O: the publisher asks a `Principal`, the command line and the API parse
what an operator typed with the `parse_*` functions, which raise `RoleError` naming the
field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

EDITOR, CHIEF, ADMIN = "editor", "chief", "admin"
ROLES: tuple[str, ...] = (EDITOR, CHIEF, ADMIN)
POSTING_ROLES = frozenset({EDITOR, CHIEF})
LEGACY_ROLES: tuple[str, ...] = (CHIEF,)  # what a token could do before roles existed

_RELATIVE = re.compile(r"([1-9][0-9]{0,4})([dh])")


class RoleError(ValueError):
    """Something an operator typed that is not a role, a scope or an expiry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Edition(Protocol):
    @property
    def edition(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of a valid token, as the publisher sees it for one request.
    `editions` None means every edition."""

    name: str
    roles: frozenset[str]
    editions: tuple[str, ...] | None = None
    expires: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_chief(self) -> bool:
        return CHIEF in self.roles

    @property
    def can_post_anywhere(self) -> bool:
        return bool(self.roles & POSTING_ROLES)

    def can_post(self, edition: str) -> bool:
        """Post, correct or withdraw in `edition`."""
        if CHIEF in self.roles:
            return True
        return EDITOR in self.roles and (self.editions is None or edition in self.editions)

    def can_withdraw(self, item: Edition) -> bool:
        """Anyone's item in an edition of the scope: a desk corrects and withdraws its
        colleagues' items; a chief anyone's, anywhere."""
        return self.can_post(item.edition)

    def acting_role(self) -> str:
        """The role an item change is recorded under in the audit trail."""
        return CHIEF if CHIEF in self.roles else EDITOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": sorted(self.roles),
            "editions": None if self.editions is None else list(self.editions),
            "expires": self.expires,
        }


def parse_roles(value: str | Iterable[str]) -> frozenset[str]:
    """`editor`, `admin,editor` or a list of them; at least one, none unknown."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    if not parts or not all(isinstance(p, str) for p in parts):
        raise RoleError("role", f"one or more of {', '.join(ROLES)}, comma-separated")
    roles = frozenset(p.strip() for p in parts if p.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        what = f"unknown role {unknown[0][:40]!r}" if unknown else "no role given"
        raise RoleError("role", f"{what}: one or more of {', '.join(ROLES)}")
    return roles


def parse_editions(
    value: str | Iterable[str] | None, known: tuple[str, ...], roles: frozenset[str]
) -> tuple[str, ...] | None:
    """The scope: None (every edition) or a list of known editions. A scope means
    something only to an editor: a chief works everywhere, an admin posts nothing."""
    if value is None or value == "all" or value == "*":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(p, str) for p in parts):
        raise RoleError("editions", "a list of edition codes")
    editions = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not editions:
        raise RoleError("editions", "at least one edition, or 'all'")
    unknown = [e for e in editions if e not in known]
    if unknown:
        raise RoleError(
            "editions", f"unknown edition {unknown[0][:40]!r}: one of {', '.join(known)}"
        )
    if EDITOR not in roles:
        raise RoleError("editions", "only an editor has a scope of editions; a chief has all")
    return editions


def parse_expiry(value: str | None, now: datetime) -> str | None:
    """`90d`, `12h`, an ISO 8601 date (`2026-12-31`, expiring at its start, UTC) or time;
    None for a token that does not expire. The result is UTC ISO 8601 and in the future."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RoleError("expires", "a duration like 90d or 12h, or an ISO 8601 date")
    match = _RELATIVE.fullmatch(value.strip())
    if match:
        amount = int(match[1])
        when = now + (timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount))
    else:
        when = parse_time(value, "expires")
        if when <= now:
            raise RoleError("expires", "must be in the future")
    return iso(when)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 date or date-time; a naive one is UTC."""
    try:
        when = datetime.fromisoformat(value.strip()) if len(value) <= 40 else None
    except ValueError:
        when = None
    if when is None:
        raise RoleError(field, "an ISO 8601 date or time, like 2026-12-31 or 2026-12-31T18:00Z")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def expired(expires: str | None, now: datetime) -> bool:
    return expires is not None and parse_time(expires, "expires") <= now
