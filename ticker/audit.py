"""The audit trail: who changed what, when, from where, field by field.

An entry is written by the store in the same atomic step as the change it records (an
item's publish, a token's creation), so the trail can neither miss a change nor tell of
one that did not happen. Entries are kept by time (`TICKER_AUDIT_DAYS`), never edited.

Pure: the entry, the field-level difference of two items, the filters of a query and its
opaque paging cursor. The stores keep and read entries (`Broker.audit`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .items import Item, edition_of
from .roles import RoleError, parse_time

SYSTEM = "system"  # the actor of what the service does by itself (expiry)
OPERATOR = "operator"  # the role of a command run on the store's machine (`ticker token`)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTERS = ("item", "editor", "edition", "from", "to", "cursor", "limit")


class AuditQueryError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AuditEntry:
    """One change. `id` and `at` are given by the store when it writes the entry.

    `item` is the item's id for item changes; `subject` names what another operation
    acted on (a token's name). `changes` maps each changed field to `[before, after]`."""

    action: str
    actor: str
    role: str | None = None
    edition: str | None = None
    item: str | None = None
    subject: str | None = None
    address: str | None = None
    user_agent: str | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    at: str | None = None
    id: str | None = None

    def body(self) -> dict[str, Any]:
        """What the store keeps; it adds `id` and `at` itself."""
        return {
            "action": self.action,
            "actor": self.actor,
            "role": self.role,
            "edition": self.edition,
            "item": self.item,
            "subject": self.subject,
            "address": self.address,
            "user_agent": self.user_agent,
            "changes": self.changes,
        }

    def body_json(self) -> str:
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, **self.body()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, id: str, at: str) -> AuditEntry:
        known = {k: body.get(k) for k in cls.__dataclass_fields__ if k not in ("id", "at")}
        known["changes"] = known.get("changes") or {}
        return cls(**known, id=id, at=at)


@dataclass(frozen=True, slots=True)
class Request:
    """Where a change came from, as the publisher saw it."""

    actor: str
    role: str | None
    address: str | None = None
    user_agent: str | None = None


def item_changes(before: Item | None, after: Item) -> dict[str, list[Any]]:
    """Each field whose value differs, as [before, after]; every field of a new item."""
    new = after.to_dict()
    old = before.to_dict() if before is not None else {}
    return {name: [old.get(name), value] for name, value in new.items() if old.get(name) != value}


def for_item(kind: str, before: Item | None, after: Item, by: Request) -> AuditEntry:
    return AuditEntry(
        action=kind,
        actor=by.actor,
        role=by.role,
        edition=after.edition,
        item=after.id,
        address=by.address,
        user_agent=(by.user_agent or "")[:200] or None,
        changes=item_changes(before, after),
    )


def for_change(kind: str, after: Item) -> AuditEntry:
    """The entry a store writes for a change that came without one: the expiry sweeper's
    (the service itself), or a direct caller of the broker. It knows the item after the
    change; of the item before, what every such change does to it."""
    changes: dict[str, list[Any]] = {"version": [after.version - 1, after.version]}
    if kind == "posted":
        changes = item_changes(None, after)
    elif kind in ("withdrawn", "expired"):
        changes["status"] = ["live", after.status]
    return AuditEntry(
        action=kind,
        actor=SYSTEM if kind == "expired" else after.editor,
        role=SYSTEM if kind == "expired" else None,
        edition=after.edition,
        item=after.id,
        changes=changes,
    )


def for_operation(
    action: str, subject: str, by: Request, changes: dict[str, list[Any]] | None = None
) -> AuditEntry:
    """An entry for an operation that is not an item change: a token's (`token.created`),
    or another setting's (`webhook.created`, ...). Never put a secret in `changes`."""
    return AuditEntry(
        action=action,
        actor=by.actor,
        role=by.role,
        subject=subject,
        address=by.address,
        user_agent=(by.user_agent or "")[:200] or None,
        changes=changes or {},
    )


def for_token(action: str, name: str) -> AuditEntry:
    """The entry a store writes for a token operation that came without one."""
    return AuditEntry(action=action, actor=OPERATOR, role=OPERATOR, subject=name)


def cutoff(now: datetime, days: int) -> datetime:
    """Entries older than this are gone (or about to be)."""
    return now - timedelta(days=days)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditQuery:
    item: str | None = None
    editor: str | None = None
    edition: str | None = None
    since: datetime | None = None  # `from`, inclusive
    until: datetime | None = None  # `to`, inclusive
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, entry: AuditEntry, at: datetime) -> bool:
        return (
            (self.item is None or entry.item == self.item)
            and (self.editor is None or entry.actor == self.editor)
            and (self.edition is None or entry.edition == self.edition)
            and (self.since is None or at >= self.since)
            and (self.until is None or at <= self.until)
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    cursor: str | None  # for the next (older) page; None when there is none


def parse_query(params: Mapping[str, str], editions: tuple[str, ...]) -> AuditQuery:
    """The filters of `GET /api/audit` and `ticker audit`; raises AuditQueryError."""
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise AuditQueryError(unknown[0][:40], f"unknown filter; one of {', '.join(FILTERS)}")
    text: dict[str, str | None] = {}
    for name in FILTERS:
        value = params.get(name)
        if value is not None and (len(value) > 200 or not value.isprintable() or not value):
            raise AuditQueryError(name, "1-200 printable characters")
        text[name] = value
    edition = text["edition"]
    if edition is not None and edition not in editions:
        raise AuditQueryError("edition", f"unknown edition; one of {', '.join(editions)}")
    item = text["item"]
    if item is not None and edition_of(item) not in editions:
        raise AuditQueryError("item", "not an item id of a served edition, like en-...")
    limit = DEFAULT_LIMIT
    if text["limit"] is not None:
        raw = text["limit"]
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
            raise AuditQueryError("limit", f"a whole number from 1 to {MAX_LIMIT}")
        limit = int(raw)
    if text["cursor"] is not None:
        decode_cursor(text["cursor"])  # refused here, before any store is asked
    return AuditQuery(
        item=item,
        editor=text["editor"],
        edition=edition,
        since=_time(text["from"], "from"),
        until=_time(text["to"], "to"),
        cursor=text["cursor"],
        limit=limit,
    )


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, name)
    except RoleError as exc:
        raise AuditQueryError(name, exc.message) from None


def encode_cursor(position: list[Any]) -> str:
    """Opaque to clients: what the store needs to go on after the last entry shown."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        position = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, list) or not position:
        raise AuditQueryError("cursor", "not a cursor from an earlier answer")
    return position


def at_iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
