"""The shape of a live ticker: pinned items first, then newest first, and at most so many.

Plain functions with no I/O, shared by the hub's snapshots, the publisher's live list and
the retirement of the oldest items, so that every channel agrees on which items a ticker
shows and in what order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _newest_first_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return (item["created"], item["id"])


def in_ticker_order(items: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Pinned items first, then the rest; newest first within each (ties by id, as the
    widget breaks them)."""
    ordered = sorted(items, key=_newest_first_key, reverse=True)
    return [i for i in ordered if i.get("pinned")] + [i for i in ordered if not i.get("pinned")]


def to_retire(items: Iterable[Mapping[str, Any]], max_live: int) -> list[Any]:
    """The items past the cap that make way for newer ones: the oldest unpinned first.
    Pinned items are never retired (the pin cap is at most the live cap, so the unpinned
    ones always suffice)."""
    items = list(items)
    excess = len(items) - max_live
    if excess <= 0:
        return []
    unpinned = sorted((i for i in items if not i.get("pinned")), key=_newest_first_key)
    return unpinned[:excess]


def pinned_count(items: Iterable[Mapping[str, Any]], *, besides: str | None = None) -> int:
    """How many items are pinned, leaving out the one with id `besides`."""
    return sum(1 for i in items if i.get("pinned") and i["id"] != besides)
