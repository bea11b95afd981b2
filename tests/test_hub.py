"""The hub end to end on the embedded broker: real uvicorn, real hub, real WebSocket clients."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stack import Client, Stack, hub_url
from ticker import items
from ticker.brokers.base import Change
from ticker.config import Limits, Vocabulary


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


async def test_snapshot_then_live_items_of_its_own_edition_only(stack):
    old = await stack.post(headline="Already on the ticker")
    async with (
        Client.connect(stack.ws_url(edition="en")) as en,
        Client.connect(stack.ws_url(edition="ar")) as ar,
    ):
        snapshot = await en.next()
        assert snapshot["type"] == "snapshot" and snapshot["reset"] is False
        assert [i["id"] for i in snapshot["items"]] == [old["id"]]
        assert (await ar.next())["items"] == []

        item = await stack.post(
            headline="Lebanese Presidency: President assigns envoy",
            source="Lebanese Presidency",
            urgency=1,
        )
        event = await en.next_event()
        assert (event["kind"], event["item"]["id"]) == ("posted", item["id"])
        assert event["item"]["source"] == "Lebanese Presidency"
        await ar.expect_silence()


async def test_correction_and_withdrawal_reach_the_client(stack):
    item = await stack.post(headline="Five wounded in Rafah clashes")
    async with Client.connect(stack.ws_url()) as client:
        await client.next()
        await stack.correct(item["id"], headline="Six wounded in Rafah clashes")
        corrected = await client.next_event()
        assert corrected["kind"] == "corrected"
        assert corrected["item"]["id"] == item["id"]
        assert corrected["item"]["version"] == 2
        assert corrected["item"]["headline"] == "Six wounded in Rafah clashes"
        await stack.withdraw(item["id"])
        withdrawn = await client.next_event()
        assert (withdrawn["kind"], withdrawn["item"]["status"]) == ("withdrawn", "withdrawn")
    async with Client.connect(stack.ws_url()) as late:
        assert (await late.next())["items"] == []


async def test_reconnect_with_cursor_gets_exactly_what_it_missed(stack):
    first = await stack.post(headline="Before the drop")
    async with Client.connect(stack.ws_url()) as client:
        snapshot = await client.next()
        cursor = snapshot["cursor"]
        assert [i["id"] for i in snapshot["items"]] == [first["id"]]
    missed = [await stack.post(headline=f"Missed {n}") for n in range(3)]
    await stack.withdraw(first["id"])
    async with Client.connect(stack.ws_url(since=cursor)) as client:
        resumed = await client.next()
        assert resumed["type"] == "resumed" and resumed["missed"] == 4
        events = [await client.next_event() for _ in range(4)]
        assert [e["item"]["id"] for e in events] == [m["id"] for m in missed] + [first["id"]]
        assert [e["kind"] for e in events] == ["posted"] * 3 + ["withdrawn"]
        await client.expect_silence()
        live = await stack.post(headline="After the resume")
        assert (await client.next_event())["item"]["id"] == live["id"]


async def test_resume_at_the_head_sends_nothing_more(stack):
    await stack.post(headline="One")
    async with Client.connect(stack.ws_url()) as client:
        cursor = (await client.next())["cursor"]
    async with Client.connect(stack.ws_url(since=cursor)) as client:
        assert (await client.next())["missed"] == 0
        await client.expect_silence()


async def test_cursor_from_another_epoch_or_too_old_gets_a_reset_snapshot(tmp_path):
    async with Stack(tmp_path, limits={"history": 3}) as stack:
        item = await stack.post(headline="Kept")
        async with Client.connect(stack.ws_url(since="deadbeef:1")) as client:
            reset = await client.next()
            assert reset["type"] == "snapshot" and reset["reset"] is True
            assert [i["id"] for i in reset["items"]] == [item["id"]]
        epoch = reset["cursor"].split(":")[0]
        for n in range(4):
            await stack.post(headline=f"Filler {n}")
        async with Client.connect(stack.ws_url(since=f"{epoch}:1")) as client:
            reset = await client.next()
            assert reset["reset"] is True and len(reset["items"]) == 5
        async with Client.connect(stack.ws_url(since=f"{epoch}:999")) as client:
            assert (await client.next())["reset"] is True


async def test_region_filter_and_correction_out_of_the_filter(stack):
    async with (
        Client.connect(stack.ws_url(region="Palestine")) as palestine,
        Client.connect(stack.ws_url()) as everything,
    ):
        await palestine.next()
        await everything.next()
        europe = await stack.post(headline="Summit in Brussels", regions=["Europe"])
        rafah = await stack.post(headline="Clashes in Rafah", regions=["Palestine"])
        assert (await palestine.next_event())["item"]["id"] == rafah["id"]
        await stack.correct(rafah["id"], regions=["MENA"])
        excluded = await palestine.next_event()
        assert (excluded["kind"], excluded["item"]["id"]) == ("excluded", rafah["id"])
        seen = [(await everything.next_event())["item"]["id"] for _ in range(3)]
        assert seen == [europe["id"], rafah["id"], rafah["id"]]
        await palestine.expect_silence()


async def test_burst_arrives_in_order_and_complete(stack):
    async with Client.connect(stack.ws_url()) as client:
        await client.next()
        posted = await asyncio.gather(*(stack.post(headline=f"Burst {n}") for n in range(20)))
        events = [await client.next_event() for _ in range(20)]
        offsets = [int(e["cursor"].split(":")[1]) for e in events]
        assert offsets == sorted(offsets) and len(set(offsets)) == 20
        assert {e["item"]["id"] for e in events} == {p["id"] for p in posted}


async def test_change_of_subscription_sends_a_new_snapshot(stack):
    ar_item = await stack.post(edition="ar", headline="الرئاسة اللبنانية: تكليف السفير")
    async with Client.connect(stack.ws_url()) as client:
        await client.next()
        await client.ws.send('{"type":"subscribe","edition":"ar"}')
        snapshot = await client.next()
        assert (snapshot["edition"], [i["id"] for i in snapshot["items"]]) == (
            "ar",
            [ar_item["id"]],
        )
        await stack.post(headline="English item")
        await client.expect_silence()
        await client.ws.send('{"type":"ping"}')
        assert (await client.next())["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 4400),
        ('{"type":"shout"}', 4400),
        ('{"type":"subscribe","edition":"xx"}', 4400),
        ("[1,2,3]", 4400),
        (b"\x00\x01binary", 1003),
        ("x" * 5000, 1009),
    ],
)
async def test_bad_frames_close_only_the_bad_client(stack, frame, code):
    async with Client.connect(stack.ws_url()) as good, Client.connect(stack.ws_url()) as bad:
        await good.next()
        await bad.next()
        await bad.ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await bad.next_event()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        item = await stack.post(headline="Still flowing")
        assert (await good.next_event())["item"]["id"] == item["id"]


async def test_a_flood_of_client_frames_is_cut_off(stack):
    async with Client.connect(stack.ws_url()) as flooder:
        await flooder.next()
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                await flooder.ws.send('{"type":"ping"}')
            while True:
                await flooder.next()
        assert closed.value.rcvd.code == 4429


@pytest.mark.parametrize(
    "query",
    [
        "edition=xx",
        "edition=en&region=Mars",
        "edition=en&since=garbage",
        "edition=en&foo=1",
        "region=Europe",
    ],
)
async def test_bad_subscription_is_refused_with_a_reason(stack, query):
    url = f"ws://127.0.0.1:{stack.hub.port}/ws?{query}"
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4400
    assert closed.value.rcvd.reason


async def test_foreign_origin_is_refused_and_allowed_origin_accepted(stack):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(stack.ws_url(), origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with Client.connect(stack.ws_url(), origin="http://news.example") as client:
        assert (await client.next())["type"] == "snapshot"


async def test_slow_consumer_is_closed_and_others_keep_up(tmp_path):
    # Posted straight to the store, past the publisher that would retire the oldest: the
    # cap stays out of the way, so the good reader gets exactly these events.
    limits = {"ws_write_buffer_max_bytes": 16 * 1024, "max_live": 10_000}
    async with Stack(tmp_path, limits=limits) as stack:
        # A client that never reads: a raw socket with a tiny receive buffer.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", stack.hub.port))
        stalled.sendall(
            b"GET /ws?edition=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            async with Client.connect(stack.ws_url()) as good:
                await good.next()
                # Enough to fill the kernel's socket buffers (several MB on loopback).
                headline = "عاجل " * 59
                for n in range(6000):
                    item = items.create(
                        {"edition": "en", "headline": f"{n} {headline}"},
                        editor="desk",
                        vocabulary=Vocabulary(),
                        limits=Limits(),
                    )
                    await stack.broker.publish(Change("posted", item))
                    if n % 500 == 0:
                        await asyncio.sleep(0.01)
                for _ in range(6000):
                    await good.next_event()
                assert stack.hub.metrics.slow_consumers == 1
        finally:
            stalled.close()


async def test_shutdown_closes_clients_with_going_away(tmp_path):
    stack = Stack(tmp_path)
    await stack.__aenter__()
    try:
        async with Client.connect(hub_url(stack.hub)) as client:
            await client.next()
            await asyncio.wait_for(stack.hub.stop(), 5)
            with pytest.raises(ConnectionClosed) as closed:
                await client.next()
            assert closed.value.rcvd.code == 1001
    finally:
        await stack.http.aclose()
        await stack.publisher.stop()
        await stack.broker.close()


async def test_hub_health_endpoints(stack, tmp_path):
    async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP/1.1 GET over a real socket: status code, headers, body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            async with asyncio.timeout(5):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                status_line, *header_lines = head.removesuffix("\r\n\r\n").split("\r\n")
                version, code, _reason = status_line.split(" ", 2)
                assert version == "HTTP/1.1", status_line
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in header_lines)
                }
                body = await reader.readexactly(int(headers["content-length"]))
        finally:
            writer.close()
        return int(code), headers, body

    from prometheus_client.parser import text_string_to_metric_families

    from stack import settings_for
    from ticker.brokers.redis import RedisBroker
    from ticker.hub import Hub

    # A hub whose store never answers runs (healthz) but has no ticker to serve (readyz).
    settings = settings_for(tmp_path, "redis://127.0.0.1:9/0")
    broker = RedisBroker(settings.redis_url, editions=("en", "ar", "es"))
    loading = Hub(settings, broker)
    await loading.start(port=0)
    try:
        assert (await get(loading.port, "/healthz"))[0] == 200
        assert (await get(loading.port, "/readyz"))[0] == 503
    finally:
        await loading.stop()
        await broker.close()

    # The stack's hub has loaded the ticker.
    port = stack.hub.port
    for path in ("/healthz", "/readyz", "/readyz?probe=1"):
        assert (await get(port, path))[0] == 200, path

    code, headers, body = await get(port, "/metrics")
    assert code == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    # Every line parses (prometheus_client raises on a malformed one), and every sample has
    # the type its own `# TYPE` line declares.
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert types["ticker_hub_open_connections"] == "gauge"
    assert types["ticker_hub_connections_total"] == "counter"
    assert types["ticker_hub_events_total"] == "counter"
    assert types["ticker_hub_fanout_seconds"] == "histogram"
    assert samples[("ticker_hub_open_connections", ())] == 0
    assert samples[("ticker_hub_events_total", ())] == 0
    assert samples[("ticker_hub_fanout_seconds_bucket", (("le", "+Inf"),))] == 0
    for name, _labels in samples:
        assert any(name == t or name.startswith(t + "_") for t in types), name

    for path in ("/nothing-here", "/ws/extra", "/metrics/x"):
        assert (await get(port, path))[0] == 404, path


async def test_a_dead_peer_is_dropped_by_keepalive(tmp_path):
    async with Stack(tmp_path, ping_interval=0.2, ping_timeout=0.3) as stack:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.hub.port)
        writer.write(
            b"GET /ws?edition=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in await reader.readline()
        assert stack.hub.metrics.connections == 1
        # Never answer the pings: the hub must give up on this peer.
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass
        writer.close()
        for _ in range(50):
            if stack.hub.metrics.connections == 0:
                break
            await asyncio.sleep(0.05)
        assert stack.hub.metrics.connections == 0


async def test_metrics_in_prometheus_text(stack):
    async with Client.connect(stack.ws_url()) as client:
        await client.next()
        await stack.post(headline="Counted")
        await client.next_event()
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{stack.hub.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if not line.startswith("#")
    )
    assert float(samples["ticker_hub_open_connections"]) == 1
    assert float(samples["ticker_hub_connections_total"]) == 1
    assert float(samples["ticker_hub_events_total"]) == 1
    assert float(samples["ticker_hub_deliveries_total"]) >= 1
    assert float(samples['ticker_hub_edition_offset{edition="en"}']) == 1
    assert float(samples['ticker_hub_fanout_seconds_bucket{le="+Inf"}']) >= 1
    assert float(samples["ticker_hub_lag_seconds"]) < 5


async def test_invalid_utf8_and_fragmented_frames_are_refused(stack):
    for frames, code in (
        ([(0x81, b"\xff\xfe")], 1007),
        ([(0x01, b'{"type":'), (0x80, b'"ping"}')], 4400),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.hub.port)
        writer.write(
            b"GET /ws?edition=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await reader.readuntil(b"\r\n\r\n")
        for opcode, data in frames:  # masked client frames, key 0
            writer.write(bytes((opcode, 0x80 | len(data))) + b"\0\0\0\0" + data)
        received = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                received += chunk
        writer.close()
        close = received[received.rindex(b"\x88") :]
        assert int.from_bytes(close[2:4], "big") == code, received[-60:]


async def test_a_hub_without_its_store_asks_clients_to_come_back_later(tmp_path):
    from stack import settings_for
    from ticker.brokers.redis import RedisBroker
    from ticker.hub import Hub

    settings = settings_for(tmp_path, "redis://127.0.0.1:9/0")
    broker = RedisBroker(settings.redis_url, editions=("en", "ar", "es"))
    hub = Hub(settings, broker)
    await hub.start(port=0)
    try:
        # Refused before the upgrade, so a proxy in front tries the next hub.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(hub_url(hub)):
                pass
        response = refused.value.response
        assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
        assert b"not ready" in response.body
    finally:
        await hub.stop()
        await broker.close()
