"""The wire protocol and the in-memory log, with no sockets."""

from __future__ import annotations

import json

import pytest

from ticker import items, protocol
from ticker.config import Limits, Vocabulary
from ticker.edition_log import EditionLog, payload_for
from ticker.events import (
    Cursor,
    CursorError,
    EditionState,
    Event,
    Gap,
    event_body,
    event_payload,
    parse_cursor,
)
from ticker.protocol import CloseCode, ProtocolError, Subscription
from ticker.transports.websocket import text_frame

VOCAB = Vocabulary()


def event(offset: int, kind: str = "posted", epoch: str = "e1", **fields) -> Event:
    fields.setdefault("headline", f"item {offset}")
    fields.setdefault("edition", "en")
    item_id = fields.pop("id", None)
    item = items.create(fields, editor="a", vocabulary=VOCAB, limits=Limits())
    item = items.Item.from_dict({**item.to_dict(), "id": item_id or item.id})
    body = event_body(kind, "en", item.to_json())
    return Event.from_payload(event_payload(Cursor(epoch, offset), body))


def test_cursor_round_trip_and_garbage():
    assert parse_cursor("ab12:42") == Cursor("ab12", 42)
    assert str(Cursor("ab12", 42)) == "ab12:42"
    for bad in ("", "42", "ab:", ":4", "ab:-1", "ab:1x", "a" * 70 + ":1", "a:\u00b2", "a:\u0661"):
        with pytest.raises(CursorError):
            parse_cursor(bad)
        with pytest.raises(ProtocolError) as exc:
            protocol.cursor_from(bad)
        assert exc.value.code == CloseCode.BAD_REQUEST


def test_query_parsing():
    sub, since = protocol.parse_query("edition=ar&region=palestine&since=e1:3", VOCAB)
    assert sub == Subscription("ar", "Palestine", None) and since == Cursor("e1", 3)
    for bad in (
        "edition=xx",
        "edition=en&edition=ar",
        "edition=en&x=1",
        "",
        "edition=en&category=Gossip",
    ):
        with pytest.raises(ProtocolError):
            protocol.parse_query(bad, VOCAB)


def test_client_messages():
    assert protocol.parse_client_message('{"type":"ping"}', VOCAB) == protocol.Ping()
    subscribe = protocol.parse_client_message(
        '{"type":"subscribe","edition":"es","category":"Sports"}', VOCAB
    )
    assert subscribe == protocol.Subscribe(Subscription("es", None, "Sports"), None)
    with pytest.raises(ProtocolError) as exc:
        protocol.parse_client_message(b"\x00", VOCAB)
    assert exc.value.code == CloseCode.UNSUPPORTED_DATA
    for bad in ("{", "[]", '"ping"', '{"type":"subscribe","edition":"en","x":1}'):
        with pytest.raises(ProtocolError):
            protocol.parse_client_message(bad, VOCAB)


def test_event_payload_is_the_json_clients_read():
    e = event(7, headline='Quote "marks" and عربي')
    message = json.loads(e.payload)
    assert message["type"] == "event" and message["cursor"] == "e1:7"
    assert message["item"]["headline"] == 'Quote "marks" and عربي'
    assert e.cursor == Cursor("e1", 7) and e.kind == "posted"


def test_batch_and_snapshot_messages():
    assert protocol.batch([b'{"a":1}']) == b'{"a":1}'
    assert json.loads(protocol.batch([b'{"a":1}', b'{"b":2}'])) == [{"a": 1}, {"b": 2}]
    snap = json.loads(
        protocol.snapshot_message(
            Subscription("en"), Cursor("e", 2), ['{"id":"x"}'], reset=True, heartbeat=25
        )
    )
    assert snap == {
        "type": "snapshot",
        "edition": "en",
        "region": None,
        "category": None,
        "cursor": "e:2",
        "reset": True,
        "heartbeat": 25,
        "items": [{"id": "x"}],
    }


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_text_frame_header(size):
    frame = text_frame(b"x" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and len(frame) == size + 2
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size


def test_log_applies_in_order_and_refuses_gaps():
    log = EditionLog(EditionState("en", "e1", 0), history=3)
    first = event(1, id="en-a")
    assert log.apply(first) is None
    assert "en-a" in log.items
    with pytest.raises(Gap):
        log.apply(event(3))
    with pytest.raises(Gap):
        log.apply(event(2, epoch="other"))
    corrected = event(2, "corrected", id="en-a", headline="fixed")
    assert log.apply(corrected)["headline"] == "item 1"
    log.apply(event(3, "withdrawn", id="en-a"))
    assert log.items == {} and log.cursor == Cursor("e1", 3)


def test_log_since_serves_only_complete_history():
    log = EditionLog(EditionState("en", "e1", 0), history=3)
    for n in range(1, 6):
        log.apply(event(n))
    assert [e.cursor.offset for e in log.since(Cursor("e1", 2))] == [3, 4, 5]
    assert log.since(Cursor("e1", 5)) == []
    assert log.since(Cursor("e1", 1)) is None  # trimmed
    assert log.since(Cursor("e1", 6)) is None  # from the future
    assert log.since(Cursor("e2", 5)) is None  # another epoch


def test_payload_for_filtered_subscriptions():
    sub = Subscription("en", region="Palestine")
    inside = event(1, id="en-a", regions=["Palestine"])
    outside = event(2, id="en-b", regions=["Europe"])
    assert payload_for(Subscription("en"), outside, None) is outside.payload
    assert payload_for(sub, inside, None) is inside.payload
    assert payload_for(sub, outside, None) is None
    moved = event(3, "corrected", id="en-a", regions=["MENA"])
    removal = json.loads(payload_for(sub, moved, inside.item))
    assert (removal["kind"], removal["item"], removal["cursor"]) == (
        "excluded",
        {"id": "en-a"},
        "e1:3",
    )
    assert (
        payload_for(sub, event(4, "corrected", id="en-b", regions=["Asia"]), outside.item) is None
    )
