"""`ticker tail`: a terminal client of the hub that follows one edition and resumes.

It keeps its own copy of the ticker and its last cursor, and reconnects with jittered
backoff, so it shows each change once across hub restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .events import REMOVE_KINDS, UPSERT_KINDS
from .protocol import CloseCode, parse_server_frame

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


class TailState:
    """What `tail` knows: the live items and the cursor to resume from. No I/O."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.cursor: str | None = None

    def handle(self, message: dict[str, Any]) -> list[str]:
        kind = message.get("type")
        if kind == "snapshot":
            self.items = {i["id"]: i for i in message["items"]}
            self.cursor = message["cursor"]
            head = "reset: the ticker was reloaded" if message.get("reset") else "ticker"
            lines = [f"# {head} {message['edition']}: {len(self.items)} live items"]
            return lines + [format_item(i, " ") for i in message["items"]]
        if kind == "resumed":
            return [f"# resumed, {message['missed']} missed"]
        if kind == "heartbeat":
            # A filtered edition may match nothing for hours; its cursor still moves on.
            self.cursor = message.get("cursor", self.cursor)
            return []
        if kind == "event":
            self.cursor = message["cursor"]
            item = message["item"]
            if message["kind"] in UPSERT_KINDS:
                fresh = item["id"] not in self.items
                self.items[item["id"]] = item
                return [format_item(item, "+" if fresh else "~")]
            if message["kind"] in REMOVE_KINDS:
                gone = self.items.pop(item["id"], None) or item
                return [f"- {message['kind']}: {gone.get('headline', item['id'])}"]
        return []


async def tail(
    hub_url: str,
    edition: str,
    *,
    region: str | None = None,
    category: str | None = None,
    out: TextIO = sys.stdout,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    state = TailState()
    delay = 0.25
    while not stop():
        params = {"edition": edition, "region": region, "category": category, "since": state.cursor}
        url = f"{hub_url}?{urlencode({k: v for k, v in params.items() if v})}"
        try:
            async with connect(url, compression=None, open_timeout=5) as ws:
                delay = 0.25
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        for message in parse_server_frame(frame):
                            for line in state.handle(message):
                                print(line, file=out, flush=True)
            code, reason = ws.close_code, ws.close_reason
            if code == CloseCode.BAD_REQUEST:
                raise SystemExit(f"the hub refused the subscription: {reason}")
            print(
                f"# disconnected ({code or 'no close frame'}{': ' + reason if reason else ''});"
                " reconnecting",
                file=out,
                flush=True,
            )
        except InvalidStatus as exc:
            if exc.response.status_code in (403, 404):
                raise SystemExit(f"the hub refused the connection: {exc}") from None
            print(f"# {exc}; reconnecting", file=out, flush=True)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            print(f"# cannot reach {hub_url} ({exc}); retrying", file=out, flush=True)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 10.0)
