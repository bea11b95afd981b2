"""The benchmark's Server-Sent Events reader: whole events out of whatever pieces the
network delivers, with nothing lost or repeated at the seams."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.wire import EventSplitter, split_events

STREAM = (
    b': heartbeat\nid: e1:1\nevent: heartbeat\ndata: {"type":"heartbeat"}\n\n'
    b'id: e1:2\nevent: event\ndata: {"type":"event","cursor":"e1:2"}\n\n'
    b'event: close\ndata: {"type":"close","code":4008}\n\n'
)
EVENTS = [
    (b"heartbeat", b'{"type":"heartbeat"}'),
    (b"event", b'{"type":"event","cursor":"e1:2"}'),
    (b"close", b'{"type":"close","code":4008}'),
]


def test_whole_events_pass_through_as_they_came() -> None:
    splitter = EventSplitter()
    assert splitter.whole(STREAM) is STREAM
    assert split_events(STREAM) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events_once(cuts: list[int]) -> None:
    splitter = EventSplitter()
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [splitter.whole(STREAM[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert b"".join(chunks) == STREAM
    assert all(chunk.endswith(b"\n\n") for chunk in chunks if chunk)
    assert [e for chunk in chunks for e in split_events(chunk)] == EVENTS
    assert splitter.buffer == b""
