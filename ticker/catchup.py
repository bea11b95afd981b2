"""HTTP catch-up: what changed since a cursor, as one answer, with no I/O.

For readers that pull instead of holding a connection open: cron jobs, partner backends,
a phone's background refresh. The rules are the live feed's: the events after the cursor,
in order, or, when they are not all kept any more, the reset snapshot. The messages are
the very JSON a WebSocket reader gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import protocol
from .edition_log import EditionLog, payload_for
from .events import Cursor, EditionState
from .items import matches
from .protocol import Subscription

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class CatchUp:
    cursor: Cursor  # where to ask from next time
    more: bool  # more events wait after `cursor`: ask again at once
    messages: list[bytes]

    def body(self, edition: str) -> bytes:
        head = protocol_head(edition, self.cursor, self.more)
        return head + b"[" + b",".join(self.messages) + b"]}"


def protocol_head(edition: str, cursor: Cursor, more: bool) -> bytes:
    return (
        f'{{"edition":"{edition}","cursor":"{cursor}","more":{"true" if more else "false"},'
        '"messages":'
    ).encode()


def etag(cursor: Cursor) -> str:
    """Every answer for one URL changes exactly when the edition's cursor moves."""
    return f'"{cursor}"'


def catch_up(
    state: EditionState,
    subscription: Subscription,
    since: Cursor | None,
    *,
    limit: int,
    history: int,
    heartbeat: float,
) -> CatchUp:
    """The events after `since` (at most `limit`), or a snapshot: a plain one without a
    cursor, one marked as a reset when the cursor cannot be resumed."""
    log = EditionLog(state, history)
    missed = log.since(since) if since is not None else None
    if missed is None:
        items = [
            log.item_json[i["id"]]
            for i in log.newest_first()
            if matches(i, subscription.region, subscription.category)
        ]
        snapshot = protocol.snapshot_message(
            subscription, log.cursor, items, reset=since is not None, heartbeat=heartbeat
        )
        return CatchUp(log.cursor, False, [snapshot])
    assert since is not None
    page = missed[:limit]
    more = len(missed) > limit
    payloads = [p for p in (payload_for(subscription, e, None) for e in page) if p is not None]
    # A filtered reader moves on with the edition even past events it does not want.
    cursor = page[-1].cursor if page else since
    if not more:
        cursor = log.cursor
    return CatchUp(cursor, more, payloads)
