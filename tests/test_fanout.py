"""The fan-out core in-process, byte for byte, with fake subscribers: no sockets."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from ticker import items, protocol
from ticker.config import Limits, Settings, Vocabulary
from ticker.events import (
    Cursor,
    EditionState,
    Event,
    event_body,
    event_payload,
    excluded_payload,
)
from ticker.fanout import FanOut, Group, WireFormat
from ticker.metrics import HubMetrics
from ticker.protocol import CloseCode, Subscription
from ticker.transports.websocket import WEBSOCKET, text_frame

VOCAB = Vocabulary()
# A transparent wire: what a group writes is "F" + the batch, so expected bytes read plainly.
PLAIN = WireFormat("plain", lambda messages: b"F" + protocol.batch(messages), ping=b"P")
EN = Subscription("en")
EN_AFRICA = Subscription("en", region="Africa")


class FakeSubscriber:
    """Records every byte the fan-out sends it; can pretend its buffer is full."""

    def __init__(self, name: str = "", fanout: FanOut | None = None) -> None:
        self.name = name
        self.group: Group | None = None
        self.joined = 0
        self.heard = 0.0
        self.received: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.backlog = 0
        self.overflow_on_write = False
        self.fanout = fanout

    def send(self, data: bytes) -> None:
        assert self.closed is None, f"{self.name}: data after close: {data!r}"
        self.received.append(data)
        if self.overflow_on_write and self.fanout is not None:
            self.fanout.overflowing(self)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def unsent(self) -> int:
        return self.backlog

    def __repr__(self) -> str:
        return f"FakeSubscriber({self.name})"


def make_item(n: int, **fields) -> items.Item:
    fields.setdefault("headline", f"item {n}")
    fields.setdefault("edition", "en")
    return items.create(fields, editor="desk", vocabulary=VOCAB, limits=Limits())


def make_event(offset: int, item: items.Item, kind: str = "posted", epoch: str = "e1") -> Event:
    body = event_body(kind, item.edition, item.to_json())  # type: ignore[arg-type]
    return Event.from_payload(event_payload(Cursor(epoch, offset), body))


def fanout_with(**settings: object) -> FanOut:
    settings.setdefault("coalesce_ms", 0.0)
    base = replace(Settings(), **settings)  # type: ignore[arg-type]
    fanout = FanOut(base, HubMetrics())
    for edition in VOCAB.editions:
        fanout.load(EditionState(edition, "e1", 0))
    return fanout


def snapshot(sub: Subscription, cursor: str, items_json: list[str], reset: bool = False) -> bytes:
    epoch, _, offset = cursor.partition(":")
    return protocol.snapshot_message(
        sub, Cursor(epoch, int(offset)), items_json, reset=reset, heartbeat=25.0
    )


async def settle() -> None:
    """Let scheduled flushes and chunks run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_new_reader_gets_a_snapshot_then_each_event_once() -> None:
    fanout = fanout_with()
    reader = FakeSubscriber("a")
    fanout.join(reader, EN, None, PLAIN)
    assert reader.received == [b"F" + snapshot(EN, "e1:0", [])]

    first = make_event(1, make_item(1))
    fanout.apply(first)
    await settle()
    assert reader.received[1:] == [b"F" + first.payload]
    assert fanout.metrics.deliveries == 1 and fanout.metrics.frames == 1


async def test_a_burst_leaves_in_one_frame_in_order() -> None:
    fanout = fanout_with()
    readers = [FakeSubscriber(str(n)) for n in range(3)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    burst = [make_event(n, make_item(n)) for n in range(1, 21)]
    for event in burst:
        fanout.apply(event)
    await settle()
    expected = b"F[" + b",".join(e.payload for e in burst) + b"]"
    for reader in readers:
        assert reader.received[1:] == [expected]
    # The very same bytes object for everyone: built once per group.
    assert readers[0].received[1] is readers[2].received[1]


async def test_websocket_frames_are_built_once_and_exact() -> None:
    fanout = fanout_with()
    reader = FakeSubscriber()
    fanout.join(reader, EN, None, WEBSOCKET)
    event = make_event(1, make_item(1, headline="عاجل: " + "x" * 200))
    fanout.apply(event)
    await settle()
    payload = event.payload
    assert len(payload) > 125  # a 16-bit length header
    assert reader.received[1] == b"\x81\x7e" + len(payload).to_bytes(2, "big") + payload
    assert reader.received[1] == text_frame(payload)


async def test_a_resume_gets_exactly_the_missed_events() -> None:
    fanout = fanout_with()
    events = [make_event(n, make_item(n)) for n in range(1, 6)]
    for event in events:
        fanout.apply(event)
    reader = FakeSubscriber()
    fanout.join(reader, EN, Cursor("e1", 2), PLAIN)
    resumed = protocol.resumed_message(EN, Cursor("e1", 2), 3, 25.0)
    assert reader.received == [
        b"F[" + b",".join([resumed, *(e.payload for e in events[2:])]) + b"]"
    ]
    # Resuming from the newest cursor: nothing missed.
    current = FakeSubscriber()
    fanout.join(current, EN, Cursor("e1", 5), PLAIN)
    assert current.received == [b"F" + protocol.resumed_message(EN, Cursor("e1", 5), 0, 25.0)]


async def test_an_unknown_epoch_or_a_cursor_from_the_future_gets_a_reset_snapshot() -> None:
    fanout = fanout_with()
    item = make_item(1)
    fanout.apply(make_event(1, item))
    for since in (Cursor("old", 1), Cursor("e1", 9)):
        reader = FakeSubscriber()
        fanout.join(reader, EN, since, PLAIN)
        assert reader.received == [b"F" + snapshot(EN, "e1:1", [item.to_json()], reset=True)]


async def test_a_cursor_older_than_the_history_gets_a_reset_snapshot() -> None:
    fanout = fanout_with(limits=replace(Limits(), history=3))
    for n in range(1, 8):
        fanout.apply(make_event(n, make_item(n), kind="posted"))
    reader = FakeSubscriber()
    fanout.join(reader, EN, Cursor("e1", 2), PLAIN)
    message = json.loads(reader.received[0][1:])
    assert message["type"] == "snapshot" and message["reset"] is True
    assert message["cursor"] == "e1:7" and len(message["items"]) == 7


async def test_a_new_epoch_resets_every_reader_on_its_open_connection() -> None:
    fanout = fanout_with()
    fanout.apply(make_event(1, make_item(1)))
    reader = FakeSubscriber()
    fanout.join(reader, EN, None, PLAIN)
    fresh = make_item(9, headline="After the data loss")
    fanout.load(EditionState("en", "e2", 1, [fresh.to_dict()], []))
    await settle()
    assert reader.received[1:] == [b"F" + snapshot(EN, "e2:1", [fresh.to_json()], reset=True)]
    assert fanout.metrics.resets == 1


async def test_a_filtered_reader_gets_only_its_items_and_a_removal_when_corrected_out() -> None:
    fanout = fanout_with()
    africa = FakeSubscriber("africa")
    fanout.join(africa, EN_AFRICA, None, PLAIN)
    tagged = make_item(1, regions=["Africa"])
    other = make_item(2, regions=["Europe"])
    fanout.apply(make_event(1, tagged))
    fanout.apply(make_event(2, other))
    await settle()
    assert africa.received[1:] == [b"F" + make_event(1, tagged).payload]
    moved = items.correct(
        tagged, {"regions": ["Asia"]}, editor="d", vocabulary=VOCAB, limits=Limits()
    )
    fanout.apply(make_event(3, moved, kind="corrected"))
    await settle()
    assert africa.received[2] == b"F" + excluded_payload(Cursor("e1", 3), "en", tagged.id)


async def test_heartbeat_carries_the_cursor_after_the_pending_events() -> None:
    fanout = fanout_with(coalesce_ms=10_000.0)  # nothing leaves until the heartbeat
    africa = FakeSubscriber("africa")
    everyone = FakeSubscriber("everyone")
    fanout.join(africa, EN_AFRICA, None, PLAIN)
    fanout.join(everyone, EN, None, PLAIN)
    fanout.flush()  # the window starts now
    events = [make_event(n, make_item(n, regions=["Europe"])) for n in range(1, 4)]
    for event in events:
        fanout.apply(event)
    fanout.heartbeat()
    await settle()
    beat = b"F" + protocol.heartbeat_message(Cursor("e1", 3))
    assert everyone.received[1:] == [b"F[" + b",".join(e.payload for e in events) + b"]", beat]
    # Nothing matched the filter, yet its cursor moves with the edition.
    assert africa.received[1:] == [beat]


async def test_a_slow_reader_is_closed_during_the_write_and_gets_nothing_after() -> None:
    fanout = fanout_with()
    slow = FakeSubscriber("slow", fanout)
    fast = FakeSubscriber("fast", fanout)
    fanout.join(slow, EN, None, PLAIN)
    fanout.join(fast, EN, None, PLAIN)
    slow.overflow_on_write = True
    first, second = make_event(1, make_item(1)), make_event(2, make_item(2))
    fanout.apply(first)
    await settle()
    assert slow.closed == (CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with your cursor")
    assert slow.group is None and fanout.metrics.slow_consumers == 1
    fanout.apply(second)
    await settle()
    assert slow.received[1:] == [b"F" + first.payload]
    assert fast.received[1:] == [b"F" + first.payload, b"F" + second.payload]


async def test_a_group_that_empties_during_a_flush_is_gone_and_harmless() -> None:
    fanout = fanout_with()
    only = FakeSubscriber("only", fanout)
    fanout.join(only, EN, None, PLAIN)
    only.overflow_on_write = True
    fanout.apply(make_event(1, make_item(1)))
    await settle()
    assert only.closed is not None and fanout.groups == {} and fanout.by_edition["en"] == []
    fanout.apply(make_event(2, make_item(2)))  # no group left to tell
    await settle()
    later = FakeSubscriber("later")
    fanout.join(later, EN, None, PLAIN)
    assert json.loads(later.received[0][1:])["cursor"] == "e1:2"


async def test_a_large_group_is_written_in_chunks_and_other_work_runs_between() -> None:
    fanout = fanout_with(fanout_chunk=3)
    readers = [FakeSubscriber(str(n)) for n in range(10)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    event = make_event(1, make_item(1))
    fanout.apply(event)
    fanout.flush()
    assert sum(len(r.received) == 2 for r in readers) == 3  # one chunk, then the loop runs
    await settle()
    assert all(r.received[1:] == [b"F" + event.payload] for r in readers)


async def test_joins_and_leaves_during_a_chunked_write_get_nothing_twice_and_nothing_late() -> None:
    fanout = fanout_with(fanout_chunk=2)
    readers = [FakeSubscriber(str(n)) for n in range(6)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    first = make_event(1, make_item(1))
    fanout.apply(first)
    fanout.flush()  # readers 0 and 1 have it; 2-5 wait for the next chunks
    gone, back = readers[4], readers[5]
    fanout.leave(gone)
    fanout.leave(back)
    fanout.join(back, EN, None, PLAIN)  # its snapshot already holds the first event
    newcomer = FakeSubscriber("new")
    fanout.join(newcomer, EN, None, PLAIN)
    second = make_event(2, make_item(2))
    fanout.apply(second)
    await settle()
    for reader in readers[:2]:  # reached before the second event came: it follows alone
        assert reader.received[1:] == [b"F" + first.payload, b"F" + second.payload], reader
    for reader in readers[2:4]:  # not yet reached: both events in one frame
        assert reader.received[1:] == [b"F" + protocol.batch([first.payload, second.payload])]
    assert gone.received[1:] == []
    for late in (back, newcomer):
        assert json.loads(late.received[-2][1:])["cursor"] == "e1:1"
        assert late.received[-1] == b"F" + second.payload


async def test_a_burst_rides_along_with_the_frame_being_written() -> None:
    fanout = fanout_with(fanout_chunk=2, coalesce_ms=0.0)
    readers = [FakeSubscriber(str(n)) for n in range(8)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    events = [make_event(n, make_item(n)) for n in range(1, 5)]
    fanout.apply(events[0])
    fanout.flush()  # readers 0 and 1 have the first event
    for event in events[1:]:
        fanout.apply(event)
    await settle()
    rest = b"F" + protocol.batch([e.payload for e in events[1:]])
    for reader in readers[:2]:
        assert reader.received[1:] == [b"F" + events[0].payload, rest]
    for reader in readers[2:]:
        assert reader.received[1:] == [b"F" + protocol.batch([e.payload for e in events])]


async def test_each_member_misses_only_what_joined_after_it_was_written() -> None:
    fanout = fanout_with(fanout_chunk=2, coalesce_ms=0.0)
    readers = [FakeSubscriber(str(n)) for n in range(8)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    e1, e2, e3 = (make_event(n, make_item(n)) for n in (1, 2, 3))
    fanout.apply(e1)
    fanout.flush()  # readers 0-1 have e1
    fanout.apply(e2)
    await asyncio.sleep(0)  # e2 joins the frame: readers 2-3 get e1+e2
    fanout.apply(e3)
    await asyncio.sleep(0)  # e3 joins too: readers 4-5 get e1+e2+e3
    await settle()

    def frame(*events: Event) -> bytes:
        return b"F" + protocol.batch([e.payload for e in events])

    for reader in readers[:2]:
        assert reader.received[1:] == [frame(e1), frame(e2, e3)], reader
    for reader in readers[2:4]:
        assert reader.received[1:] == [frame(e1, e2), frame(e3)], reader
    for reader in readers[4:]:
        assert reader.received[1:] == [frame(e1, e2, e3)], reader


async def test_events_after_a_heartbeat_never_join_the_frame_before_it() -> None:
    fanout = fanout_with(fanout_chunk=2, coalesce_ms=0.0)
    readers = [FakeSubscriber(str(n)) for n in range(8)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    first, second = make_event(1, make_item(1)), make_event(2, make_item(2))
    fanout.apply(first)
    fanout.flush()
    fanout.heartbeat()  # carries cursor e1:1: nothing newer may arrive before it
    fanout.apply(second)
    await settle()
    for reader in readers:
        kinds = [json.loads(frame[1:])["type"] for frame in reader.received[1:]]
        assert kinds == ["event", "heartbeat", "event"], reader
        assert reader.received[-1] == b"F" + second.payload


async def test_a_join_with_pending_events_sends_them_to_the_members_before_it() -> None:
    fanout = fanout_with(coalesce_ms=10_000.0)
    early = FakeSubscriber("early")
    fanout.join(early, EN, None, PLAIN)
    fanout.flush()
    event = make_event(1, make_item(1))
    fanout.apply(event)  # pending: the window is still open
    late = FakeSubscriber("late")
    fanout.join(late, EN, None, PLAIN)
    await settle()
    assert early.received[1:] == [b"F" + event.payload]
    assert json.loads(late.received[0][1:])["cursor"] == "e1:1" and len(late.received) == 1


async def test_keepalive_closes_the_silent_and_the_backlogged() -> None:
    fanout = fanout_with()
    silent, talking, backlogged = (FakeSubscriber(n) for n in ("silent", "talking", "backlog"))
    for reader in (silent, talking, backlogged):
        fanout.join(reader, EN, None, PLAIN)
    probed = fanout.probe()
    await settle()
    assert all(r.received[-1] == b"P" for r in (silent, talking, backlogged))
    talking.heard = backlogged.heard = probed + 0.1
    backlogged.backlog = fanout.settings.limits.ws_write_buffer_max_bytes + 1
    fanout.check(probed)
    assert silent.closed == (CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
    assert backlogged.closed is not None and backlogged.closed[0] == CloseCode.SLOW_CONSUMER
    assert talking.closed is None and list(fanout.groups.values())[0].members.keys() == {talking}


async def test_a_wire_without_a_probe_is_never_probed() -> None:
    fanout = fanout_with()
    quiet_wire = WireFormat("stream", lambda messages: b"S" + protocol.batch(messages))
    reader = FakeSubscriber()
    fanout.join(reader, EN, None, quiet_wire)
    probed = fanout.probe()
    await settle()
    fanout.check(probed)
    assert reader.received == [b"S" + snapshot(EN, "e1:0", [])] and reader.closed is None


async def test_each_wire_format_has_its_own_group_and_frame() -> None:
    fanout = fanout_with()
    plain, ws = FakeSubscriber("plain"), FakeSubscriber("ws")
    fanout.join(plain, EN, None, PLAIN)
    fanout.join(ws, EN, None, WEBSOCKET)
    event = make_event(1, make_item(1))
    fanout.apply(event)
    await settle()
    assert plain.received[1] == b"F" + event.payload
    assert ws.received[1] == text_frame(event.payload)
    assert len(fanout.groups) == 2


@pytest.mark.parametrize("chunk", [1, 7, 4096])
async def test_drain_writes_everything_at_once(chunk: int) -> None:
    fanout = fanout_with(fanout_chunk=chunk)
    readers = [FakeSubscriber(str(n)) for n in range(20)]
    for reader in readers:
        fanout.join(reader, EN, None, PLAIN)
    fanout.apply(make_event(1, make_item(1)))
    fanout.drain()
    assert all(len(r.received) == 2 for r in readers)
