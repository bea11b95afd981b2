"""Server-Sent Events on the hub's port, over real sockets: the same subscription rules,
resume and reset as the WebSocket, framed as events."""

from __future__ import annotations

import asyncio
import json

import pytest
from sseclient import SseReader

from stack import Client, Stack
from ticker.transports.sse import closing_event, sse_event


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


def test_each_message_is_one_event_with_its_cursor_and_type() -> None:
    event = b'{"type":"event","cursor":"e1:7","kind":"posted","edition":"en","item":{}}'
    assert sse_event(event) == b"id: e1:7\nevent: event\ndata: " + event + b"\n\n"
    beat = b'{"type":"heartbeat","cursor":"e1:9"}'
    assert sse_event(beat) == b": heartbeat\nid: e1:9\nevent: heartbeat\ndata: " + beat + b"\n\n"
    assert closing_event(1001, "bye") == (
        b'event: close\ndata: {"type":"close","code":1001,"reason":"bye"}\n\n'
    )


async def test_snapshot_then_live_events_carry_the_websocket_json(stack):
    old = await stack.post(headline="Already on the ticker")
    stream = await SseReader.open(stack.hub.port, "/sse?edition=en")
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-store"
        assert stream.headers["x-accel-buffering"] == "no"
        assert "access-control-allow-origin" not in stream.headers  # no Origin, no CORS
        snapshot = await stream.next()
        assert stream.retry == 2000
        assert snapshot.event == "snapshot" and snapshot.id == snapshot.message["cursor"]
        assert [i["id"] for i in snapshot.message["items"]] == [old["id"]]
        async with Client.connect(stack.ws_url()) as ws:
            await ws.next()
            item = await stack.post(headline="Lebanese Presidency: President assigns envoy")
            event = await stream.next_event()
            over_ws = await ws.next_event()
        assert event.event == "event" and event.message == over_ws
        assert event.id == over_ws["cursor"] and over_ws["item"]["id"] == item["id"]
    finally:
        stream.close()


async def test_last_event_id_resumes_exactly_and_wins_over_since(stack):
    first = await stack.post(headline="Before the drop")
    stream = await SseReader.open(stack.hub.port, "/sse?edition=en")
    cursor = (await stream.next()).id
    stream.close()
    missed = [await stack.post(headline=f"Missed {n}") for n in range(3)]
    await stack.withdraw(first["id"])
    stream = await SseReader.open(stack.hub.port, "/sse?edition=en", {"Last-Event-ID": cursor})
    try:
        resumed = await stream.next()
        assert resumed.event == "resumed" and resumed.message["missed"] == 4
        events = [await stream.next_event() for _ in range(4)]
        ids = [e.message["item"]["id"] for e in events]
        assert ids == [m["id"] for m in missed] + [first["id"]]
        assert [e.id for e in events] == [e.message["cursor"] for e in events]
    finally:
        stream.close()
    # The header wins over an old `since` in the URL (EventSource keeps its first URL).
    stream = await SseReader.open(
        stack.hub.port, f"/sse?edition=en&since={cursor}", {"Last-Event-ID": events[-1].id}
    )
    try:
        assert (await stream.next()).message["missed"] == 0
    finally:
        stream.close()
    # A cursor from another life of the log is a reset.
    stream = await SseReader.open(stack.hub.port, "/sse?edition=en&since=gone:3")
    try:
        snapshot = await stream.next()
        assert snapshot.event == "snapshot" and snapshot.message["reset"] is True
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("target", "headers", "reason"),
    [
        ("/sse?edition=xx", {}, "edition must be one of en, ar, es"),
        ("/sse?edition=en&region=Mars", {}, "region 'Mars' is not known"),
        ("/sse?edition=en&foo=1", {}, "unknown parameter 'foo'"),
        ("/sse?edition=en&since=a:%C2%B2", {}, "is not a cursor"),
        ("/sse?edition=en", {"Last-Event-ID": "garbage"}, "is not a cursor"),
        ("/sse?edition=en", {"Last-Event-ID": "x" * 200}, "Last-Event-ID is not a cursor"),
    ],
)
async def test_a_bad_request_is_a_400_with_the_reason(stack, target, headers, reason):
    stream = await SseReader.open(stack.hub.port, target, headers)
    try:
        assert stream.status == 400
        assert reason in stream.body.decode()
        assert await stream.ended()
    finally:
        stream.close()


async def test_cors_names_an_allowed_origin_and_refuses_others(stack):
    allowed = await SseReader.open(
        stack.hub.port, "/sse?edition=en", {"Origin": "http://news.example"}
    )
    try:
        assert allowed.status == 200
        assert allowed.headers["access-control-allow-origin"] == "http://news.example"
        assert allowed.headers["vary"] == "Origin"
    finally:
        allowed.close()
    foreign = await SseReader.open(
        stack.hub.port, "/sse?edition=en", {"Origin": "http://evil.example"}
    )
    try:
        assert foreign.status == 403
        assert "access-control-allow-origin" not in foreign.headers
    finally:
        foreign.close()


async def test_heartbeats_are_comments_that_carry_the_cursor_to_a_filtered_reader(tmp_path):
    async with Stack(tmp_path, heartbeat_interval=0.2) as stack:
        stream = await SseReader.open(stack.hub.port, "/sse?edition=en&region=Africa")
        try:
            assert (await stream.next()).event == "snapshot"
            await stack.post(headline="Elsewhere", regions=["Europe"])
            current = (await stack.http.get("/api/items?edition=en")).json()["cursor"]
            beats = [await stream.next() for _ in range(3)]  # the first may predate the post
            assert all(b.event == "heartbeat" and b.comments == ["heartbeat"] for b in beats)
            assert all(b.id == b.message["cursor"] for b in beats)
            assert beats[-1].id == current  # the filtered reader's cursor kept up
        finally:
            stream.close()


async def test_shutdown_ends_every_stream_with_a_going_away_event(tmp_path):
    stack = Stack(tmp_path)
    await stack.__aenter__()
    try:
        stream = await SseReader.open(stack.hub.port, "/sse?edition=ar")
        assert (await stream.next()).event == "snapshot"
        await asyncio.wait_for(stack.hub.stop(), 5)
        goodbye = await stream.next()
        assert goodbye.event == "close"
        assert json.loads(goodbye.data) == {
            "type": "close",
            "code": 1001,
            "reason": "hub shutting down",
        }
        assert await stream.ended()
        stream.close()
    finally:
        await stack.http.aclose()
        await stack.publisher.stop()
        await stack.broker.close()


async def test_a_stream_counts_as_a_connection_and_leaves_cleanly(stack):
    stream = await SseReader.open(stack.hub.port, "/sse?edition=es")
    await stream.next()
    assert stack.hub.metrics.connections == 1
    stream.close()
    for _ in range(100):
        if stack.hub.metrics.connections == 0:
            break
        await asyncio.sleep(0.02)
    assert stack.hub.metrics.connections == 0 and stack.hub.fanout.groups == {}
