"""The shared vocabulary of the event log: kinds, cursors, events and edition states.

Brokers produce these, the hub consumes them, and every channel to readers speaks of
them. Defined once, here, with no I/O, so that a cursor means the same thing everywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal["posted", "corrected", "withdrawn", "expired"]
EventKind = Literal["posted", "corrected", "withdrawn", "expired", "excluded"]
CHANGE_KINDS: frozenset[str] = frozenset({"posted", "corrected", "withdrawn", "expired"})
UPSERT_KINDS: frozenset[str] = frozenset({"posted", "corrected"})
# "excluded" is never stored: it is what a filtered reader gets for an item corrected out
# of its region or category.
REMOVE_KINDS: frozenset[str] = frozenset({"withdrawn", "expired", "excluded"})

CURSOR_MAX = 64
_CURSOR = re.compile(r"([A-Za-z0-9_-]{1,40}):([0-9]{1,20})", re.ASCII)


class CursorError(ValueError):
    """Text that is not a cursor."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one edition's log. The epoch changes when the log is lost and restarted."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"


def parse_cursor(text: str) -> Cursor:
    """`epoch:offset`, with an ASCII epoch and ASCII digits: nothing else is a cursor."""
    match = _CURSOR.fullmatch(text) if len(text) <= CURSOR_MAX else None
    if match is None:
        raise CursorError(f"{text[:40]!r} is not a cursor")
    return Cursor(match[1], int(match[2]))


# --- events on the wire -------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def event_body(kind: EventKind, edition: str, item_json: str) -> str:
    """An event without its cursor. The broker adds the cursor in the same atomic step that
    assigns it, so the log and the live feed carry byte-identical events."""
    return f'"kind":{_dumps(kind)},"edition":{_dumps(edition)},"item":{item_json}}}'


def event_payload(cursor: Cursor, body: str) -> bytes:
    return f'{{"type":"event","cursor":"{cursor}",{body}'.encode()


def excluded_payload(cursor: Cursor, edition: str, item_id: str) -> bytes:
    """Sent to a filtered subscription whose item was corrected out of its region/category."""
    return event_payload(cursor, event_body("excluded", edition, _dumps({"id": item_id})))


@dataclass(frozen=True, slots=True)
class Event:
    """One change in an edition's log, with the exact bytes every client receives."""

    edition: str
    cursor: Cursor
    kind: str
    item: dict[str, Any]
    payload: bytes

    @classmethod
    def from_payload(cls, payload: bytes | str) -> Event:
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        message = json.loads(raw)
        if message.get("type") != "event":
            raise ValueError("not an event")
        return cls(
            message["edition"],
            parse_cursor(message["cursor"]),
            message["kind"],
            message["item"],
            raw,
        )


@dataclass(slots=True)
class EditionState:
    """An edition as a broker holds it: where its log stands, its live items, its history."""

    edition: str
    epoch: str
    offset: int
    items: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # oldest first, at most the history size

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.epoch, self.offset)


class Gap(Exception):
    """An event arrived that does not follow the last one: the copy must be refilled."""
