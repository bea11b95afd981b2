"""`ticker tail`: a terminal client of the hub that follows one subscription and resumes.

It is `ticker.client.TickerClient` with a printer: each change once, across hub restarts,
with the client's backoff and heartbeat watchdog.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .client import (
    Change,
    Connected,
    Corrected,
    Disconnected,
    Excluded,
    Item,
    Posted,
    Reset,
    Snapshot,
    TickerClient,
    TickerRefused,
)

URGENCY_LABELS = {1: "FLASH", 2: "BULLETIN", 3: "URGENT"}


def format_item(item: dict[str, Any], mark: str = "+") -> str:
    label = URGENCY_LABELS.get(item.get("urgency", 9), "")
    source = f"{item['source']}: " if item.get("source") else ""
    when = item.get("updated", "")[11:19]
    tags = ", ".join([*item.get("regions", []), *item.get("categories", [])])
    parts = [
        f"{mark} {when}",
        f"[{label}]" if label else "",
        f"{source}{item['headline']}",
        f"({tags})" if tags else "",
        f"v{item['version']}" if item.get("version", 1) > 1 else "",
    ]
    return " ".join(p for p in parts if p)


class TailView:
    """What `tail` shows: the live items, so a removal can name its headline. No I/O."""

    def __init__(self, edition: str) -> None:
        self.edition = edition
        self.items: dict[str, Item] = {}

    def show(self, change: Change) -> list[str]:
        if isinstance(change, Snapshot):
            self.items = {i.id: i for i in change.items}
            head = "reset: the ticker was reloaded" if isinstance(change, Reset) else "ticker"
            lines = [f"# {head} {self.edition}: {len(self.items)} live items"]
            return lines + [format_item(dict(i.raw), " ") for i in change.items]
        if isinstance(change, Posted | Corrected):
            fresh = change.item.id not in self.items
            self.items[change.item.id] = change.item
            return [format_item(dict(change.item.raw), "+" if fresh else "~")]
        gone = self.items.pop(change.item_id, None)
        if gone is None and not isinstance(change, Excluded):
            gone = change.item
        kind = type(change).__name__.lower()
        return [f"- {kind}: {gone.headline if gone else change.item_id}"]


def describe(status: Connected | Disconnected, hub_url: str) -> str | None:
    if isinstance(status, Connected):
        return f"# resumed, {status.missed} missed" if status.resumed else None
    if not status.opened:
        return f"# cannot reach {hub_url} ({status.reason}); retrying in {status.retry_in:.1f} s"
    code = status.code or "no close frame"
    reason = f": {status.reason}" if status.reason else ""
    return f"# disconnected ({code}{reason}); reconnecting in {status.retry_in:.1f} s"


async def tail(
    hub_url: str,
    edition: str,
    *,
    region: str | None = None,
    category: str | None = None,
    out: TextIO = sys.stdout,
    **options: Any,
) -> None:
    """Print each change of the subscription until cancelled; `options` go to
    `TickerClient` (max_size, min_delay, ...)."""
    view = TailView(edition)

    def status(event: Connected | Disconnected) -> None:
        line = describe(event, hub_url)
        if line:
            print(line, file=out, flush=True)

    client = TickerClient(hub_url, edition, region, category, on_connection=status, **options)
    try:
        async with client:
            async for change in client:
                for line in view.show(change):
                    print(line, file=out, flush=True)
    except TickerRefused as exc:
        what = f"HTTP {exc.status}" if exc.status else exc.code
        raise SystemExit(f"the hub refused the subscription ({what}): {exc.reason}") from None
