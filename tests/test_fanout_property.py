"""The fan-out's promise under any interleaving of joins, leaves, events, flushes,
heartbeats and chunked writes: every reader gets every event after its greeting exactly
once and in order, and no heartbeat runs behind an event it was sent."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fanout import EN, PLAIN, FakeSubscriber, fanout_with, make_event, make_item

STEPS = st.lists(
    st.one_of(
        st.just(("join",)),
        st.tuples(st.just("leave"), st.integers(0, 30)),
        st.tuples(st.just("rejoin"), st.integers(0, 30)),
        st.just(("event",)),
        st.just(("flush",)),
        st.just(("heartbeat",)),
        st.tuples(st.just("run"), st.integers(1, 3)),
    ),
    max_size=60,
)


def messages(frame: bytes) -> list[dict]:
    decoded = json.loads(frame[1:])
    return decoded if isinstance(decoded, list) else [decoded]


def offset(message: dict) -> int:
    return int(message["cursor"].rpartition(":")[2])


def check(reader: FakeSubscriber, last: int | None) -> None:
    """Replays what a reader got: each greeting sets its position, each event must be the
    next offset, a heartbeat may not be behind it. `last`: where it must end, if still in."""
    position: int | None = None
    for frame in reader.received:
        for message in messages(frame):
            kind = message["type"]
            if kind in ("snapshot", "resumed"):
                position = offset(message)
            elif kind == "event":
                assert position is not None and offset(message) == position + 1, reader
                position += 1
            elif kind == "heartbeat":
                assert position is not None and offset(message) >= position, reader
    if last is not None:
        assert position == last, (reader, position, last)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 12), steps=STEPS, chunk=st.integers(1, 4))
def test_every_reader_gets_every_event_once_in_order(
    start: int, steps: list[tuple], chunk: int
) -> None:
    async def scenario() -> None:
        fanout = fanout_with(fanout_chunk=chunk, coalesce_ms=0.0)
        readers = [FakeSubscriber(str(n)) for n in range(start)]
        for reader in readers:
            fanout.join(reader, EN, None, PLAIN)
        applied = 0
        for step in steps:
            match step:
                case ("join",):
                    reader = FakeSubscriber(str(len(readers)))
                    readers.append(reader)
                    fanout.join(reader, EN, None, PLAIN)
                case ("leave", n) if readers:
                    fanout.leave(readers[n % len(readers)])
                case ("rejoin", n) if readers:
                    reader = readers[n % len(readers)]
                    fanout.leave(reader)
                    reader.received.append(b"F" + json.dumps({"type": "gone"}).encode())
                    fanout.join(reader, EN, None, PLAIN)
                case ("event",):
                    applied += 1
                    fanout.apply(make_event(applied, make_item(applied)))
                case ("flush",):
                    fanout.flush()
                case ("heartbeat",):
                    fanout.heartbeat()
                case ("run", n):
                    for _ in range(n):
                        await asyncio.sleep(0)
        fanout.drain()
        for _ in range(10):
            await asyncio.sleep(0)
        for reader in readers:
            check(reader, applied if reader.group is not None else None)

    asyncio.run(scenario())
