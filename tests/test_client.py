"""`ticker.client` against real hubs over real sockets: restarted, frozen, wiped."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import TICKER, free_port, stop
from tcpproxy import TcpProxy
from websockets.asyncio.server import serve

from stack import Publisher, Stack, settings_for
from ticker.auth import create_token
from ticker.brokers import make_broker
from ticker.client import (
    Change,
    Connected,
    Corrected,
    Disconnected,
    Excluded,
    Expired,
    Posted,
    Reset,
    Snapshot,
    TickerClient,
    TickerRefused,
    Withdrawn,
)
from ticker.events import parse_cursor
from ticker.hub import Hub
from ticker.tail import tail


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path, heartbeat_interval=0.3) as running:
        yield running


def hub_ws(stack: Stack) -> str:
    return f"ws://127.0.0.1:{stack.hub.port}/ws"


async def next_change(ticker: TickerClient, timeout: float = 5.0) -> Change:
    return await asyncio.wait_for(anext(ticker), timeout)


async def expect_nothing(ticker: TickerClient, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        change = await asyncio.wait_for(anext(ticker), seconds)
        raise AssertionError(f"expected nothing, got {change}")


class Collector:
    """Reads a client in the background, as an app would."""

    def __init__(self, ticker: TickerClient) -> None:
        self.ticker = ticker
        self.changes: list[Change] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for change in self.ticker:
            self.changes.append(change)

    def summaries(self) -> list[tuple[str, str | None, int | None, str | None]]:
        """The changes after the first snapshot, as `_summary` gives them."""
        return [_summary(x) for x in self.changes[1:]]

    async def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self):
            if self.task.done():
                self.task.result()
            assert asyncio.get_running_loop().time() < deadline, self.changes
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _summary(change: Change) -> tuple[str, str | None, int | None, str | None]:
    """A change as (type, item id, version, headline): what a test compares in order."""
    item = getattr(change, "item", None)
    return (
        type(change).__name__,
        getattr(change, "item_id", None),
        item.version if item else None,
        item.headline if item else None,
    )


class Desk:
    """An editor's token on a publisher that is not a `Stack`'s."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _ask(self, method: str, path: str, status: int, **fields: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, json=fields or None)
        assert response.status_code == status, response.text
        return response.json()

    async def post(self, **fields: Any) -> dict[str, Any]:
        return await self._ask("POST", "/api/items", 201, edition="en", **fields)

    async def correct(self, item_id: str, **fields: Any) -> dict[str, Any]:
        return await self._ask("PATCH", f"/api/items/{item_id}", 200, **fields)

    async def withdraw(self, item_id: str) -> dict[str, Any]:
        return await self._ask("DELETE", f"/api/items/{item_id}", 200)


class Expected:
    """Changes made through the publisher, as the client should hand them out."""

    def __init__(self, desk: Stack | Desk) -> None:
        self.desk = desk
        self.changes: list[tuple[str, str | None, int | None, str | None]] = []

    def _add(self, kind: str, item: dict[str, Any]) -> str:
        self.changes.append((kind, item["id"], item["version"], item["headline"]))
        return item["id"]

    async def post(self, headline: str) -> str:
        return self._add("Posted", await self.desk.post(headline=headline))

    async def correct(self, item_id: str, headline: str) -> str:
        return self._add("Corrected", await self.desk.correct(item_id, headline=headline))

    async def withdraw(self, item_id: str) -> str:
        return self._add("Withdrawn", await self.desk.withdraw(item_id))


async def test_typed_changes_and_their_cursors(stack):
    old = await stack.post(headline="Already on the ticker", regions=["MENA"], urgency=1)
    async with TickerClient(hub_ws(stack), "en") as ticker:
        assert ticker.cursor is None
        first = await next_change(ticker)
        assert type(first) is Snapshot
        assert [i.id for i in first.items] == [old["id"]]
        assert first.items[0].regions == ("MENA",) and first.items[0].urgency == 1
        assert ticker.cursor == first.cursor

        item = await stack.post(headline="Five wounded in Rafah clashes", source="Occupied")
        await stack.correct(item["id"], headline="Six wounded in Rafah clashes")
        await stack.withdraw(item["id"])
        posted, corrected, withdrawn = [await next_change(ticker) for _ in range(3)]
        assert isinstance(posted, Posted) and posted.item.source == "Occupied"
        assert isinstance(corrected, Corrected) and corrected.item.version == 2
        assert corrected.item.headline == "Six wounded in Rafah clashes"
        assert isinstance(withdrawn, Withdrawn) and withdrawn.item.status == "withdrawn"
        assert posted.item_id == corrected.item_id == withdrawn.item_id == item["id"]
        assert ticker.cursor == withdrawn.cursor
        offsets = [int(c.cursor.split(":")[1]) for c in (first, posted, corrected, withdrawn)]
        assert offsets == sorted(offsets) and len(set(offsets)) == 4
        assert corrected.item.raw["headline"] == "Six wounded in Rafah clashes"


async def test_an_expiry_and_a_retirement_are_expired_changes(tmp_path):
    """An item whose `expires` passes, and the oldest item retired when a post takes the
    edition past its cap of live items (3 here), both reach the client as `Expired`; a
    client that was away while they happened gets them on resuming."""
    async with Stack(
        tmp_path, heartbeat_interval=0.3, limits={"max_live": 3, "max_pinned": 1}
    ) as stack:
        async with TickerClient(hub_ws(stack), "en") as ticker:
            snapshot = await next_change(ticker)
            assert type(snapshot) is Snapshot and snapshot.items == ()
            brief = await stack.post(headline="Brief", expires_in=0.5)
            posted = await next_change(ticker)
            assert _summary(posted) == ("Posted", brief["id"], 1, "Brief")
            assert posted.item.expires == brief["expires"]  # type: ignore[union-attr]
            away = ticker.cursor  # a client stopped here misses both removals

            expired = await next_change(ticker)  # the sweeper's, half a second on
            assert _summary(expired) == ("Expired", brief["id"], 2, "Brief")
            assert type(expired) is Expired and expired.item.status == "expired"

            stories = []
            for n in range(4):  # the fourth retires the oldest
                stories.append((await stack.post(headline=f"Story {n}"))["id"])
                await asyncio.sleep(0.01)  # each its own `created`: which is oldest is clear
            changes = [await next_change(ticker) for _ in range(5)]
            retired = [*[("Posted", i, 1) for i in stories], ("Expired", stories[0], 2)]
            assert [_summary(c)[:3] for c in changes] == retired
            assert type(changes[-1]) is Expired and changes[-1].item.status == "expired"
            await expect_nothing(ticker, 0.7)
            live = (await stack.http.get("/api/items?edition=en", headers=stack.auth)).json()
            assert sorted(i["id"] for i in live["items"]) == sorted(stories[1:])

        async with TickerClient(hub_ws(stack), "en", since=away) as again:
            missed = [await next_change(again) for _ in range(6)]
            assert [_summary(c)[:3] for c in missed] == [("Expired", brief["id"], 2), *retired]
            await expect_nothing(again, 0.7)
            assert again.cursor == ticker.cursor


async def test_cursor_persists_across_client_instances(stack):
    async with TickerClient(hub_ws(stack), "en") as ticker:
        await next_change(ticker)
        a = await stack.post(headline="First")
        b = await stack.post(headline="Second")
        assert (await next_change(ticker)).item.id == a["id"]  # type: ignore[union-attr]
        # "Second" may already sit in the client's buffer: the cursor is what was handed out.
        await asyncio.sleep(0.2)
        saved = ticker.cursor
    c = await stack.post(headline="Third")
    seen: list[Connected | Disconnected] = []
    async with TickerClient(hub_ws(stack), "en", since=saved, on_connection=seen.append) as again:
        changes = [await next_change(again) for _ in range(2)]
        assert [(type(x), x.item.id) for x in changes] == [  # type: ignore[union-attr]
            (Posted, b["id"]),
            (Posted, c["id"]),
        ]
        assert seen[0] == Connected(resumed=True, missed=2)
        await expect_nothing(again, 0.5)
        saved = again.cursor
    async with TickerClient(hub_ws(stack), "en", since=saved) as third:
        await expect_nothing(third, 0.7)  # up to date: no snapshot, nothing twice
        assert third.cursor == saved


async def test_filtered_subscription_advances_with_heartbeats(stack):
    async with TickerClient(hub_ws(stack), "en", region="MENA") as ticker:
        start = (await next_change(ticker)).cursor
        for n in range(3):
            await stack.post(headline=f"Elsewhere {n}", regions=["Europe"])
        await expect_nothing(ticker, 1.0)  # heartbeats every 0.3 s move the cursor on
        head = str(stack.hub.fanout.logs["en"].cursor)
        assert ticker.cursor == head != start

        mena = await stack.post(headline="In the region", regions=["MENA"])
        assert (await next_change(ticker)).item.id == mena["id"]  # type: ignore[union-attr]
        await stack.correct(mena["id"], regions=["Europe"])
        excluded = await next_change(ticker)
        assert excluded == Excluded(mena["id"], excluded.cursor)
        saved = ticker.cursor

    await stack.post(headline="Elsewhere again", regions=["Europe"])
    async with TickerClient(hub_ws(stack), "en", region="MENA", since=saved) as again:
        await expect_nothing(again, 0.7)  # resumed, not reset: nothing to hand out


async def test_every_change_once_across_hub_restarts(stack):
    """Posts, corrections and withdrawals made while the hub is down, and after it is back,
    reach the client once each, in order, with their types: resumed, never reset."""
    port = stack.hub.port
    statuses: list[Connected | Disconnected] = []
    ticker = TickerClient(
        hub_ws(stack), "en", min_delay=0.05, healthy_after=0.5, on_connection=statuses.append
    )
    collector = Collector(ticker)
    expected = Expected(stack)

    def seen_all(c: Collector) -> bool:
        return len(c.summaries()) >= len(expected.changes)

    async def restart() -> None:
        stack.hub = Hub(stack.settings, stack.broker)
        await stack.hub.start(port=port)
        await asyncio.wait_for(stack.hub.ready.wait(), 10)

    try:
        await collector.wait_for(lambda c: c.changes)
        first, second, third = [await expected.post(f"Before {n}") for n in range(3)]
        await collector.wait_for(seen_all)
        await asyncio.sleep(0.6)  # healthy: the next reconnect starts from the bottom
        await stack.hub.stop()
        down = [await expected.post(f"While down 0.{n}") for n in range(2)]
        await expected.correct(first, "Before 0, corrected while down")
        await expected.withdraw(second)
        await restart()
        await expected.post("After 0")
        await expected.correct(down[0], "While down 0.0, corrected")
        await collector.wait_for(seen_all)

        await stack.hub.stop()
        await expected.post("While down 1.0")
        await expected.withdraw(down[0])
        await expected.correct(first, "Before 0, corrected again")
        await expected.post("While down 1.1")
        await restart()
        await expected.withdraw(third)
        await expected.post("After 1")
        await collector.wait_for(seen_all)
        await asyncio.sleep(0.5)
        assert type(collector.changes[0]) is Snapshot
        assert collector.summaries() == expected.changes  # each once, in order, of the right type
        kinds = [kind for kind, *_ in expected.changes]
        assert (kinds.count("Corrected"), kinds.count("Withdrawn")) == (3, 3)
        cursors = [parse_cursor(x.cursor) for x in collector.changes]
        assert len({x.epoch for x in cursors}) == 1
        offsets = [x.offset for x in cursors]
        assert offsets == sorted(set(offsets))
        assert ticker.cursor == collector.changes[-1].cursor
        drops = [s for s in statuses if isinstance(s, Disconnected) and s.opened]
        assert [d.code for d in drops] == [1001, 1001]
        assert drops[0].retry_in <= 0.05 * 1.5  # it had been up longer than healthy_after
        greetings = [s for s in statuses if isinstance(s, Connected)]
        assert [s.resumed for s in greetings] == [False, True, True]
        assert all(s.missed >= 4 for s in greetings[1:])  # what was done while it was down
    finally:
        await collector.stop()
        await ticker.aclose()


async def test_a_frozen_link_is_noticed_by_the_heartbeat_watchdog(stack):
    async with TcpProxy(stack.hub.port) as proxy:
        statuses: list[Connected | Disconnected] = []
        ticker = TickerClient(
            f"ws://127.0.0.1:{proxy.port}/ws", "en", min_delay=0.05, on_connection=statuses.append
        )
        async with ticker:
            await next_change(ticker)
            proxy.freeze()
            item = await stack.post(headline="Sent into the void")
            started = asyncio.get_running_loop().time()
            change = await next_change(ticker, timeout=5)
            waited = asyncio.get_running_loop().time() - started
            assert isinstance(change, Posted) and change.item.id == item["id"]
            assert 0.5 < waited < 4  # 2.5 heartbeats of 0.3 s, then a quick resume
            assert proxy.accepted == 2
            dropped = [s for s in statuses if isinstance(s, Disconnected)]
            assert [(d.code, d.opened) for d in dropped] == [(None, True)]
            assert "nothing heard" in dropped[0].reason
            assert statuses[-1] == Connected(resumed=True, missed=1)
            await expect_nothing(ticker, 0.5)


async def test_a_store_that_lost_its_data_gives_a_reset(tmp_path, redis_server, redis_url):
    async with Stack(tmp_path, redis_url, heartbeat_interval=0.3) as stack:
        before = await stack.post(headline="Soon forgotten")
        collector = Collector(TickerClient(hub_ws(stack), "en", min_delay=0.05))
        try:
            await collector.wait_for(lambda c: c.changes)
            assert [i.id for i in collector.changes[0].items] == [before["id"]]  # type: ignore[union-attr]
            await asyncio.to_thread(redis_server.flush)
            stack.token = await create_token(stack.broker.tokens, "desk")
            after = await stack.post(headline="After the loss")

            def has_it(c: Collector) -> bool:
                return any(
                    isinstance(x, Posted)
                    and x.item.id == after["id"]
                    or isinstance(x, Reset)
                    and after["id"] in [i.id for i in x.items]
                    for x in c.changes
                )

            await collector.wait_for(has_it)
            await asyncio.sleep(0.5)
            resets = [i for i, x in enumerate(collector.changes) if isinstance(x, Reset)]
            assert resets, collector.changes
            tail = collector.changes[resets[-1] :]
            reset = tail[0]
            assert before["id"] not in [i.id for i in reset.items]  # type: ignore[union-attr]
            shown = (
                [i.id for i in reset.items]
                + [  # type: ignore[union-attr]
                    x.item.id for x in tail[1:] if isinstance(x, Posted)
                ]
            )
            assert shown == [after["id"]]  # once: in the reset or after it, not both
            assert (
                collector.ticker.cursor.split(":")[0] != collector.changes[0].cursor.split(":")[0]
            )
        finally:
            await collector.stop()
            await collector.ticker.aclose()


async def test_a_connection_that_dies_at_once_backs_off(stack):
    for n in range(12):
        await stack.post(headline=f"A long enough headline to fill the snapshot, number {n}")
    statuses: list[Connected | Disconnected] = []
    ticker = TickerClient(
        hub_ws(stack),
        "en",
        max_size=2048,  # every snapshot is bigger: each connection dies with 1009
        min_delay=0.05,
        on_connection=statuses.append,
    )
    accepted = stack.hub.metrics.connections_total
    task = asyncio.create_task(anext(ticker))
    await asyncio.sleep(3.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await ticker.aclose()
    # 0.05 s doubling from each failure: about 6 attempts in 3 s. Starting again from the
    # bottom after each handshake would make about 60.
    assert 4 <= ticker.attempts <= 9, ticker.attempts
    assert stack.hub.metrics.connections_total - accepted == ticker.attempts
    assert {s.code for s in statuses} == {1009}
    delays = [s.retry_in for s in statuses if isinstance(s, Disconnected)]
    assert delays[-1] > 0.05 * 2 ** (len(delays) - 1) * 0.5 - 1e-9
    assert not any(isinstance(s, Connected) for s in statuses)


async def test_what_retrying_cannot_fix_is_raised(stack):
    async with TickerClient(hub_ws(stack), "en", region="Atlantis") as ticker:
        with pytest.raises(TickerRefused) as refused:
            await next_change(ticker)
    assert refused.value.code == 4400 and "Atlantis" in refused.value.reason
    assert ticker.attempts == 1

    foreign = {"Origin": "http://elsewhere.example"}
    async with TickerClient(hub_ws(stack), "en", headers=foreign) as ticker:
        with pytest.raises(TickerRefused) as refused:
            await next_change(ticker)
    assert refused.value.status == 403 and refused.value.code is None

    with pytest.raises(ValueError):
        TickerClient(f"http://127.0.0.1:{stack.hub.port}/ws")


@pytest.mark.parametrize("since", ["not a cursor", "otherepoch:5"])
async def test_a_cursor_the_hub_cannot_resume_gives_a_reset(stack, since):
    item = await stack.post(headline="On the ticker")
    statuses: list[Connected | Disconnected] = []
    async with TickerClient(
        hub_ws(stack), "en", since=since, min_delay=0.05, on_connection=statuses.append
    ) as ticker:
        reset = await next_change(ticker)
        assert isinstance(reset, Reset) and [i.id for i in reset.items] == [item["id"]]
        assert ticker.cursor == reset.cursor == str(stack.hub.fanout.logs["en"].cursor)
    malformed = since == "not a cursor"
    assert [s.code for s in statuses if isinstance(s, Disconnected)] == (
        [4400] if malformed else []
    )


def _event(cursor: str, kind: str, item_id: str, version: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id}
    if version is not None:
        item |= {"edition": "en", "headline": f"{item_id} v{version}", "version": version}
        item["status"] = "withdrawn" if kind == "withdrawn" else "live"
    return {"type": "event", "cursor": cursor, "kind": kind, "edition": "en", "item": item}


async def test_duplicates_are_dropped_even_when_a_server_repeats_itself():
    """A real server that misbehaves on purpose: it repeats events, under their old cursors
    and under new ones, and sends a heartbeat from another epoch. The client hands out each
    change once and resumes from the right cursor."""
    a1 = {"id": "en-A", "edition": "en", "headline": "A", "version": 1, "status": "live"}
    script = [
        [
            {"type": "snapshot", "cursor": "e:1", "reset": False, "heartbeat": 5, "items": [a1]},
            [_event("e:2", "posted", "en-B", 1), _event("e:3", "corrected", "en-A", 2)],
        ],
        [
            {"type": "resumed", "cursor": "e:3", "missed": 0, "heartbeat": 5},
            _event("e:3", "corrected", "en-A", 2),  # the same cursor again
            _event("e:4", "posted", "en-B", 1),  # the same (id, version) under a new cursor
            [_event("e:5", "withdrawn", "en-B", 2), _event("e:6", "withdrawn", "en-B", 2)],
            [_event("e:7", "excluded", "en-A"), _event("e:8", "excluded", "en-A")],
            _event("e:9", "corrected", "en-A", 3),  # corrected back into the filter
            {"type": "heartbeat", "cursor": "e:12"},
            {"type": "heartbeat", "cursor": "other:99"},  # not a way into a new epoch
            {"type": "heartbeat", "cursor": "e:11"},  # nor backwards
        ],
        [{"type": "snapshot", "cursor": "f:1", "reset": True, "heartbeat": 5, "items": []}],
    ]
    queries: list[str] = []

    async def handler(ws: Any) -> None:
        queries.append(ws.request.path.partition("?")[2])
        for frame in script[min(len(queries), len(script)) - 1]:
            await ws.send(json.dumps(frame))
        if len(queries) < len(script):
            await ws.close(1001, "going away")
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with TickerClient(f"ws://127.0.0.1:{port}/ws", "en", min_delay=0.01) as ticker:
            changes = [await next_change(ticker) for _ in range(7)]
            await expect_nothing(ticker, 0.3)
    assert [(type(c).__name__, c.cursor) for c in changes] == [
        ("Snapshot", "e:1"),
        ("Posted", "e:2"),
        ("Corrected", "e:3"),
        ("Withdrawn", "e:5"),
        ("Excluded", "e:7"),
        ("Corrected", "e:9"),
        ("Reset", "f:1"),
    ]
    assert queries == ["edition=en", "edition=en&since=e%3A3", "edition=en&since=e%3A12"]
    assert ticker.cursor == "f:1"


def _hub_process(redis_url: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TICKER, "hub", "--redis-url", redis_url, "--hub-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TICKER_HEARTBEAT_INTERVAL": "0.3"},
    )


async def _until_ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("the hub never became ready")


async def test_a_real_hub_process_frozen_then_restarted(tmp_path, redis_url):
    """`ticker hub` on Redis: SIGSTOP (the watchdog notices, connection attempts time out),
    SIGCONT, then a restart on the same port; the client sees every change once."""
    settings = settings_for(tmp_path, redis_url)
    broker = make_broker(settings)
    await broker.start()
    publisher = Publisher(settings, broker, own_broker=False)
    base = await publisher.start()
    token = await create_token(broker.tokens, "desk")
    hub_port = free_port()
    hub = _hub_process(redis_url, hub_port)
    statuses: list[Connected | Disconnected] = []
    collector: Collector | None = None
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            expected = Expected(Desk(http))

            def seen_all(c: Collector) -> bool:
                return len(c.summaries()) >= len(expected.changes)

            await _until_ready(hub_port)
            ticker = TickerClient(
                f"ws://127.0.0.1:{hub_port}/ws",
                "en",
                min_delay=0.05,
                max_delay=0.5,
                open_timeout=0.5,
                on_connection=statuses.append,
            )
            collector = Collector(ticker)
            await collector.wait_for(lambda c: c.changes)
            first = await expected.post("Before the freeze")
            await collector.wait_for(seen_all)

            hub.send_signal(signal.SIGSTOP)
            frozen = await expected.post("While the hub is frozen")
            await expected.correct(first, "Before the freeze, corrected while frozen")
            await asyncio.sleep(2.0)
            assert any("nothing heard" in s.reason for s in statuses if isinstance(s, Disconnected))
            hub.send_signal(signal.SIGCONT)
            await collector.wait_for(seen_all)

            await asyncio.to_thread(stop, hub)
            down = await expected.post("While the hub is down")
            await expected.withdraw(frozen)
            hub = _hub_process(redis_url, hub_port)
            await collector.wait_for(seen_all, timeout=20)
            await expected.post("After the restart")
            await expected.correct(down, "While the hub was down, corrected")
            await collector.wait_for(seen_all)
            await asyncio.sleep(0.5)
            assert type(collector.changes[0]) is Snapshot
            assert collector.summaries() == expected.changes  # each once, in order, typed
            assert any(isinstance(s, Disconnected) and s.code == 1001 for s in statuses), statuses
    finally:
        if collector is not None:
            await collector.stop()
            await collector.ticker.aclose()
        hub.send_signal(signal.SIGCONT)
        stop(hub)
        await publisher.stop()
        await broker.close()


def _doc_example(after: str = "") -> str:
    """The first Python block of docs/client.md after the heading `after`."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "client.md").read_text()
    if after:
        doc = doc.split(f"\n## {after}\n", 1)[1]
    return doc.split("```python\n", 1)[1].split("```", 1)[0]


def _start_example(example: str, stack: Stack) -> asyncio.Task:
    """Run a docs example as written, but on this test's loop and hub: its `asyncio.run`
    hands over the coroutine, which runs as a task."""
    started: list[Any] = []
    code = example.replace("ws://127.0.0.1:8001/ws", hub_ws(stack))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "run", started.append)
        exec(compile(code, "client.md", "exec"), {"__name__": "__main__"})
    assert len(started) == 1, "the example should end with asyncio.run(...)"
    return asyncio.create_task(started[0])


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _until(check: Any, task: asyncio.Task, what: str) -> None:
    for _ in range(250):
        if task.done():
            task.result()
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


async def test_the_ten_line_example_in_the_docs_runs(stack, tmp_path, monkeypatch, capsys):
    """The first example: ten lines, printing each change once across two runs."""
    example = _doc_example()
    lines = [line for line in example.splitlines() if line.strip()]
    assert len(lines) <= 10, example
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "ticker.cursor"

    def saved_head() -> bool:
        return saved.exists() and saved.read_text() == str(stack.hub.fanout.logs["en"].cursor)

    async def run(headline: str, started: str) -> tuple[dict[str, Any], list[str]]:
        """One run of the example: until it has saved the head, then one post during it."""
        task = _start_example(example, stack)
        try:
            await _until(saved_head, task, started)
            during = await stack.post(headline=headline)
            await _until(saved_head, task, "the cursor was not saved after the change")
        finally:
            await _stop(task)
        return during, capsys.readouterr().out.splitlines()

    old = await stack.post(headline="Before the first run")
    during, first_run = await run("During the first run", "the snapshot's cursor was not saved")
    assert len(first_run) == 2, first_run
    assert first_run[0].startswith(f"Snapshot(items=(Item(id={old['id']!r},")
    assert first_run[1].startswith(f"Posted(item=Item(id={during['id']!r},")
    assert "'During the first run'" in first_run[1]

    missed = await stack.post(headline="Between the runs")
    later, second_run = await run("During the second run", "the second run did not resume")
    assert [line.split("(", 1)[0] for line in second_run] == ["Posted", "Posted"], second_run
    assert repr(missed["id"]) in second_run[0] and repr(later["id"]) in second_run[1]


async def test_the_example_that_holds_the_ticker_runs(stack, capsys):
    """The second example holds what the ticker shows through a post, a correction, a
    withdrawal and an expiry."""
    old = await stack.post(headline="Old story")
    task = _start_example(_doc_example("Holding what the ticker shows"), stack)
    printed: list[str] = []
    position = 0  # just past the line last waited for

    async def shows(line: str) -> None:
        nonlocal position

        def check() -> bool:
            printed.extend(capsys.readouterr().out.splitlines())
            return line in printed[position:]

        await _until(check, task, f"{line!r} not in {printed[position:]}")
        position = printed.index(line, position) + 1

    try:
        await shows("1 live: Old story")
        fresh = await stack.post(headline="Fresh")
        await shows("2 live: Old story | Fresh")
        await stack.correct(fresh["id"], headline="Fresh, corrected")
        await shows("2 live: Old story | Fresh, corrected")
        await stack.withdraw(old["id"])
        await shows("1 live: Fresh, corrected")
        await stack.post(headline="Brief", expires_in=0.5)
        await shows("2 live: Fresh, corrected | Brief")
        await shows("1 live: Fresh, corrected")  # the sweeper's, half a second on
    finally:
        await _stop(task)
    assert printed == [
        "1 live: Old story",
        "2 live: Old story | Fresh",
        "2 live: Old story | Fresh, corrected",
        "1 live: Fresh, corrected",
        "2 live: Fresh, corrected | Brief",
        "1 live: Fresh, corrected",
    ]


async def test_tail_prints_each_change_and_exits_when_refused(stack):
    out = io.StringIO()
    old = await stack.post(headline="Already there", source="Desk", urgency=1, regions=["MENA"])
    task = asyncio.create_task(tail(hub_ws(stack), "en", out=out, min_delay=0.05))

    async def shown(text: str) -> list[str]:
        for _ in range(250):
            if text in out.getvalue():
                return out.getvalue().splitlines()
            await asyncio.sleep(0.02)
        raise AssertionError(out.getvalue())

    try:
        await shown("Already there")
        item = await stack.post(headline="Envoy named")
        await stack.correct(item["id"], headline="Envoy named to head talks")
        await stack.withdraw(old["id"])
        await shown("- withdrawn")
        port = stack.hub.port
        await stack.hub.stop()
        stack.hub = Hub(stack.settings, stack.broker)
        await stack.hub.start(port=port)
        lines = await shown("# resumed, 0 missed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lines[0] == "# ticker en: 1 live items"
    assert lines[1].startswith("  ") and lines[1].endswith("[FLASH] Desk: Already there (MENA)")
    assert lines[2].startswith("+ ") and lines[2].endswith(" [URGENT] Envoy named")
    assert lines[3].startswith("~ ") and lines[3].endswith(" [URGENT] Envoy named to head talks v2")
    assert lines[4] == "- withdrawn: Already there"
    assert lines[5].startswith("# disconnected (1001: hub shutting down); reconnecting in ")
    assert lines[-1] == "# resumed, 0 missed"

    with pytest.raises(SystemExit, match="refused the subscription.*Atlantis"):
        await tail(hub_ws(stack), "en", region="Atlantis", out=out)
