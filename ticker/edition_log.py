"""The hub's in-memory copy of an edition's log, with no I/O.

The hub keeps one `EditionLog` per edition: the live items and the recent events.
Snapshots and resumes are served from it, so a reconnect storm never reads Redis
once per connection.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from .bounds import in_ticker_order
from .events import REMOVE_KINDS, Cursor, EditionState, Event, Gap, excluded_payload
from .items import matches
from .protocol import Subscription


class EditionLog:
    """The hub's copy of one edition: ordered live items plus a ring of recent events."""

    def __init__(self, state: EditionState, history: int) -> None:
        self.edition = state.edition
        self.history = history
        self.load(state)

    def load(self, state: EditionState) -> None:
        self.epoch = state.epoch
        self.offset = state.offset
        self.items: dict[str, dict[str, Any]] = {}
        self.item_json: dict[str, str] = {}
        for item in sorted(state.items, key=lambda i: i["created"]):
            self._put(item)
        self.events: deque[Event] = deque(state.events[-self.history :], maxlen=self.history)

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.epoch, self.offset)

    def apply(self, event: Event) -> dict[str, Any] | None:
        """Apply the next event; returns the item as it was before, if there was one."""
        if event.cursor.epoch != self.epoch or event.cursor.offset != self.offset + 1:
            raise Gap(
                f"{self.edition}: expected {self.epoch}:{self.offset + 1}, got {event.cursor}"
            )
        item_id = event.item["id"]
        before = self.items.get(item_id)
        if event.kind in REMOVE_KINDS:
            self.items.pop(item_id, None)
            self.item_json.pop(item_id, None)
        else:
            self._put(event.item)
        self.offset = event.cursor.offset
        self.events.append(event)
        return before

    def _put(self, item: dict[str, Any]) -> None:
        self.items[item["id"]] = item
        self.item_json[item["id"]] = json.dumps(item, ensure_ascii=False, separators=(",", ":"))

    def newest_first(self) -> list[dict[str, Any]]:
        """The snapshot's order: pinned items first, then newest first."""
        return in_ticker_order(self.items.values())

    def since(self, cursor: Cursor) -> list[Event] | None:
        """The events after `cursor`, or None when they are no longer all here."""
        if cursor.epoch != self.epoch or cursor.offset > self.offset:
            return None
        if cursor.offset == self.offset:
            return []
        first = self.events[0].cursor.offset if self.events else self.offset + 1
        if cursor.offset + 1 < first:
            return None
        start = cursor.offset + 1 - first
        return [self.events[i] for i in range(start, len(self.events))]


def payload_for(sub: Subscription, event: Event, before: dict[str, Any] | None) -> bytes | None:
    """What a subscription receives for an event: the shared bytes, a removal for an item
    corrected out of its filter, or nothing. `before` is None when the earlier version is
    not known (on replay); then a non-matching correction is sent as a removal to be safe."""
    if not sub.filtered:
        return event.payload
    item = event.item
    if matches(item, sub.region, sub.category):
        return event.payload
    if event.kind == "corrected" and (before is None or matches(before, sub.region, sub.category)):
        return excluded_payload(event.cursor, event.edition, item["id"])
    return None
