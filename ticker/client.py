"""An asyncio client of the hub for apps and services (docs/client.md).

    async with TickerClient("ws://127.0.0.1:8001/ws", edition="en") as ticker:
        async for change in ticker:
            ...

It yields typed changes, reconnects with jittered exponential backoff, resumes from its
cursor (the heartbeat's too), watches the heartbeat, and raises `TickerRefused` only for
what retrying cannot fix. `ticker.cursor` is where the changes handed out so far stand:
persist it and pass it back as `since=` to resume exactly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .events import Cursor, CursorError, parse_cursor
from .protocol import CloseCode, parse_server_frame

logger = logging.getLogger("ticker.client")

DEFAULT_MAX_SIZE = 16 * 1024 * 1024  # a snapshot of a few thousand items fits many times over
DEFAULT_HEARTBEAT = 25.0  # until the greeting says otherwise
WATCHDOG_FACTOR = 2.5  # silence for this many heartbeats means the link is dead
FORGET_AFTER = 10_000  # removed items remembered for deduplication


# --- what the client yields ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One ticker item as the hub sends it (docs/items.md). Fields the hub adds later are
    not lost: `raw` holds the whole JSON object as received."""

    id: str
    edition: str = ""
    headline: str = ""
    source: str | None = None
    link: str | None = None
    urgency: int = 3
    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    created: str = ""
    updated: str = ""
    version: int = 0
    status: str = "live"
    expires: str | None = None
    editor: str | None = None
    pinned: bool = False  # held first in the ticker
    publish_at: str | None = None  # when a scheduled item went live
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        if not isinstance(data.get("id"), str):
            raise ValueError("an item needs a string id")
        known = {
            k: data[k]
            for k in cls.__dataclass_fields__  # type: ignore[attr-defined]
            if k in data and k != "raw" and data[k] is not None
        }
        for name in ("regions", "categories"):
            known[name] = tuple(known.get(name) or ())
        for name in ("source", "link", "expires", "editor", "publish_at"):
            known.setdefault(name, None)
        return cls(**known, raw=dict(data))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole ticker of the subscription, pinned first, then newest first: hold these
    items. The first thing a client without `since` yields."""

    items: tuple[Item, ...]
    cursor: str


@dataclass(frozen=True, slots=True)
class Reset(Snapshot):
    """The hub could not resume (new epoch, cursor too old or refused): replace everything
    you hold with these items. A `Reset` is a `Snapshot`."""


@dataclass(frozen=True, slots=True)
class Posted:
    """A new item: add it."""

    item: Item
    cursor: str

    @property
    def item_id(self) -> str:
        return self.item.id


@dataclass(frozen=True, slots=True)
class Corrected:
    """A new version of an item you hold: replace it (same `id`, higher `version`)."""

    item: Item
    cursor: str

    @property
    def item_id(self) -> str:
        return self.item.id


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """The newsroom took the item back: remove it."""

    item: Item
    cursor: str

    @property
    def item_id(self) -> str:
        return self.item.id


@dataclass(frozen=True, slots=True)
class Expired:
    """The item's `expires` time passed: remove it."""

    item: Item
    cursor: str

    @property
    def item_id(self) -> str:
        return self.item.id


@dataclass(frozen=True, slots=True)
class Excluded:
    """The item was corrected out of your region or category filter: remove it."""

    item_id: str
    cursor: str


Change = Snapshot | Posted | Corrected | Withdrawn | Expired | Excluded
_EVENTS: dict[str, type[Posted | Corrected | Withdrawn | Expired]] = {
    "posted": Posted,
    "corrected": Corrected,
    "withdrawn": Withdrawn,
    "expired": Expired,
}


# --- what happens to the connection ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The hub greeted the client: with a snapshot, or (`resumed`) with the missed events."""

    resumed: bool
    missed: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection ended or could not be made; the client tries again in `retry_in`
    seconds. `code` is the WebSocket close code, None when there was no close frame;
    `opened` says whether the WebSocket handshake had succeeded."""

    code: int | None
    reason: str
    retry_in: float
    opened: bool


class TickerRefused(Exception):
    """The hub refused the subscription; retrying unchanged cannot help. `code` is the
    close code (4400) or None, `status` the HTTP status of a refused handshake (403) or
    None, `reason` what the hub said."""

    def __init__(self, reason: str, *, code: int | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.status = status


class _Dropped(Exception):
    """The current connection is over; the client reconnects."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- the client ---------------------------------------------------------------------------------


class TickerClient:
    """Follow one subscription of the hub at `url` (`ws://HOST:PORT/ws`)."""

    def __init__(
        self,
        url: str,
        edition: str = "en",
        region: str | None = None,
        category: str | None = None,
        since: str | None = None,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        healthy_after: float = 10.0,
        open_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        on_connection: Callable[[Connected | Disconnected], None] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(f"the hub URL must be ws:// or wss://, not {url!r}")
        if parts.query:
            raise ValueError("pass edition, region, category and since as arguments")
        self.url = url
        self.edition = edition
        self.region = region
        self.category = category
        self.max_size = max_size
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self.open_timeout = open_timeout
        self.headers = dict(headers or {})
        self.on_connection = on_connection

        since = since or None
        self._cursor = since  # where the changes handed out so far stand
        self._wire = since  # the last cursor received: what a reconnect resumes from
        self._holding = since is not None  # the caller holds a state: a snapshot is a reset
        self._pending: collections.deque[Change | str] = collections.deque()
        self._ws: ClientConnection | None = None
        self._greeted_at: float | None = None
        self._heartbeat = DEFAULT_HEARTBEAT
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._versions: dict[str, int] = {}  # live items seen: id -> version
        self._gone: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.attempts = 0  # connection attempts so far

    @property
    def cursor(self) -> str | None:
        """Persist this and pass it back as `since=`: the next client resumes right after
        the last change this one handed out."""
        return self._cursor

    async def __aenter__(self) -> TickerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await _close(ws)

    def __aiter__(self) -> TickerClient:
        return self

    async def __anext__(self) -> Change:
        while True:
            if self._closed:
                raise StopAsyncIteration
            while self._pending:
                entry = self._pending.popleft()
                if isinstance(entry, str):  # a heartbeat's cursor
                    self._cursor = entry
                    continue
                self._cursor = entry.cursor
                return entry
            await self._receive()

    # --- connecting ---------------------------------------------------------------------

    def _query_url(self) -> str:
        params = {
            "edition": self.edition,
            "region": self.region,
            "category": self.category,
            "since": self._wire,
        }
        query = urlencode({k: v for k, v in params.items() if v})
        return urlunsplit(urlsplit(self.url)._replace(query=query))

    async def _connect(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._retry_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.attempts += 1
            try:
                ws = await connect(
                    self._query_url(),
                    compression=None,
                    max_size=self.max_size,
                    open_timeout=self.open_timeout,
                    additional_headers=self.headers or None,
                    user_agent_header="ticker-client",
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (408, 429):
                    body = exc.response.body.decode(errors="replace").strip()
                    raise TickerRefused(body or f"HTTP {status}", status=status) from None
                self._lost(None, f"HTTP {status}", opened=False)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self._lost(None, str(exc) or type(exc).__name__, opened=False)
            else:
                self._greeted_at = None
                return ws

    def _lost(self, code: int | None, reason: str, *, opened: bool) -> None:
        """A connection ended or failed: back off. Only a connection that was greeted and
        stayed up for `healthy_after` seconds starts the backoff again from the bottom."""
        now = asyncio.get_running_loop().time()
        if self._greeted_at is not None and now - self._greeted_at >= self.healthy_after:
            self._failures = 0
        self._greeted_at = None
        delay = min(self.max_delay, self.min_delay * 2 ** min(self._failures, 30))
        delay *= random.uniform(0.5, 1.5)
        self._failures += 1
        self._retry_at = now + delay
        logger.info("hub connection lost (%s %s); retrying in %.1f s", code, reason, delay)
        if self.on_connection is not None:
            self.on_connection(Disconnected(code, reason, delay, opened))

    # --- receiving ----------------------------------------------------------------------

    async def _receive(self) -> None:
        """Read one frame into the pending changes, connecting first if need be."""
        if self._ws is None:
            self._ws = await self._connect()
        ws = self._ws
        if self._greeted_at is None:
            timeout = self.open_timeout
        else:
            timeout = max(WATCHDOG_FACTOR * self._heartbeat, 1.0)
        try:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                ws.transport.abort()  # a frozen peer would not answer a close either
                raise _Dropped(None, f"nothing heard for {timeout:g} s") from None
            except ConnectionClosed as exc:
                closing = exc.rcvd or exc.sent
                raise _Dropped(
                    closing.code if closing else None, closing.reason if closing else ""
                ) from None
            try:
                messages = parse_server_frame(frame)
            except ValueError:
                logger.warning("ignoring a frame that is not JSON: %r", frame[:100])
                return
            for message in messages:
                if isinstance(message, dict):
                    self._handle(message)
        except _Dropped as dropped:
            self._ws = None
            await _close(ws)
            if self._closed:
                return
            if dropped.code == CloseCode.BAD_REQUEST:
                if self._wire is None:
                    raise TickerRefused(dropped.reason, code=dropped.code) from None
                # Perhaps the cursor is what the hub refused: once more without it.
                logger.warning("the hub refused %s (%s); retrying without it", self._wire, dropped)
                self._wire = None
            self._lost(dropped.code, dropped.reason, opened=True)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        try:
            if kind == "snapshot":
                self._snapshot(message)
            elif kind == "resumed":
                self._greeted(message)
                if self.on_connection is not None:
                    self.on_connection(Connected(True, int(message.get("missed") or 0)))
            elif kind == "event":
                self._event(message)
            elif kind == "heartbeat":
                self._heard_heartbeat(message.get("cursor"))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring a %s message that does not parse: %r", kind, exc)

    def _greeted(self, message: dict[str, Any]) -> None:
        self._greeted_at = asyncio.get_running_loop().time()
        heartbeat = message.get("heartbeat")
        if isinstance(heartbeat, int | float) and heartbeat > 0:
            self._heartbeat = float(heartbeat)

    def _snapshot(self, message: dict[str, Any]) -> None:
        items = tuple(Item.from_dict(i) for i in message["items"])
        cursor = str(message["cursor"])
        self._greeted(message)
        change_type = Reset if (message.get("reset") or self._holding) else Snapshot
        self._holding = True
        self._wire = cursor
        self._versions = {i.id: i.version for i in items}
        self._gone.clear()
        if self.on_connection is not None:
            self.on_connection(Connected(False, 0))
        self._pending.append(change_type(items, cursor))

    def _event(self, message: dict[str, Any]) -> None:
        cursor = str(message["cursor"])
        if _not_after(cursor, self._wire):
            return  # already received: never hand out the same event twice
        kind = message["kind"]
        data = message["item"]
        item_id = str(data["id"])
        made = _EVENTS.get(kind)
        item = Item.from_dict(data) if made is not None else None
        self._wire = cursor  # a kind this client does not know is passed over
        if kind == "excluded":
            if item_id in self._gone and item_id not in self._versions:
                return
            self._forget(item_id, self._versions.pop(item_id, 0))
            self._pending.append(Excluded(item_id, cursor))
            return
        if made is None or item is None:
            return
        seen = max(self._versions.get(item.id, 0), self._gone.get(item.id, 0))
        if made in (Posted, Corrected):
            if item.version and seen >= item.version:
                return
            self._versions[item.id] = item.version
            self._gone.pop(item.id, None)
        else:
            if item.id in self._gone and item.id not in self._versions and seen >= item.version:
                return
            self._versions.pop(item.id, None)
            self._forget(item.id, item.version)
        self._pending.append(made(item, cursor))

    def _forget(self, item_id: str, version: int) -> None:
        self._gone[item_id] = version
        self._gone.move_to_end(item_id)
        while len(self._gone) > FORGET_AFTER:
            self._gone.popitem(last=False)

    def _heard_heartbeat(self, cursor: Any) -> None:
        """Every event up to the heartbeat's cursor that this subscription wants has
        arrived: a filtered subscription's cursor moves on with its edition."""
        if not isinstance(cursor, str) or self._wire is None:
            return
        if not _same_epoch_and_later(cursor, self._wire):
            return  # a new epoch arrives with a reset snapshot, never by a heartbeat
        self._wire = cursor
        self._pending.append(cursor)


def _parse(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        return parse_cursor(text)
    except CursorError:
        return None


def _not_after(cursor: str, last: str | None) -> bool:
    """True when `cursor` is at or before `last` in the same epoch."""
    new, old = _parse(cursor), _parse(last)
    return (
        new is not None and old is not None and new.epoch == old.epoch and new.offset <= old.offset
    )


def _same_epoch_and_later(cursor: str, last: str) -> bool:
    new, old = _parse(cursor), _parse(last)
    if new is None or old is None:
        return False
    return new.epoch == old.epoch and new.offset > old.offset


async def _close(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), 2)
    except (TimeoutError, OSError, ConnectionClosed):
        ws.transport.abort()
