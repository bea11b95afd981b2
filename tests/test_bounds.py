"""The shape of a live ticker: pinned first, then newest first, and the oldest unpinned
items retired past the cap."""

from __future__ import annotations

from typing import Any

from ticker.bounds import in_ticker_order, to_retire


def item(n: int, *, pinned: bool = False, created: str | None = None) -> dict[str, Any]:
    return {
        "id": f"en-{n:03d}",
        "created": created or f"2026-05-07T15:{n:02d}:00.000Z",
        "pinned": pinned,
    }


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


def test_pinned_items_lead_then_newest_first():
    items = [
        item(1),
        item(2, pinned=True),
        item(3),
        item(4, pinned=True),
        {"id": "en-005", "created": "2026-05-07T15:05:00.000Z"},
    ]
    assert ids(in_ticker_order(items)) == ["en-004", "en-002", "en-005", "en-003", "en-001"]


def test_ties_in_time_are_broken_by_id_as_the_widget_breaks_them():
    same = "2026-05-07T15:00:00.000Z"
    assert ids(in_ticker_order([item(1, created=same), item(2, created=same)])) == [
        "en-002",
        "en-001",
    ]


def test_the_oldest_unpinned_items_retire_past_the_cap():
    items = [item(n, pinned=n in (0, 1)) for n in range(25)]
    retired = to_retire(items, 20)
    assert ids(retired) == ["en-002", "en-003", "en-004", "en-005", "en-006"]
    assert to_retire(items, 25) == [] and to_retire(items, 30) == []
    assert to_retire([], 1) == []
