"""HTTP catch-up as plain functions: the events after a cursor, pages, and resets."""

from __future__ import annotations

import json

from ticker import items
from ticker.catchup import catch_up, etag
from ticker.config import Limits, Vocabulary
from ticker.events import Cursor, EditionState, Event, event_body, event_payload
from ticker.protocol import Subscription

VOCAB = Vocabulary()
EN = Subscription("en")


def state_with(count: int, **fields) -> EditionState:
    events, live = [], []
    for offset in range(1, count + 1):
        item = items.create(
            {"edition": "en", "headline": f"item {offset}", **fields},
            editor="desk",
            vocabulary=VOCAB,
            limits=Limits(),
        )
        body = event_body("posted", "en", item.to_json())
        events.append(Event.from_payload(event_payload(Cursor("e1", offset), body)))
        live.append(item.to_dict())
    return EditionState("en", "e1", count, live, events)


def run(state: EditionState, since: Cursor | None, sub: Subscription = EN, limit: int = 100):
    return catch_up(state, sub, since, limit=limit, history=1000, heartbeat=25.0)


def test_the_events_after_the_cursor_in_order_with_the_next_cursor() -> None:
    state = state_with(5)
    answer = run(state, Cursor("e1", 2))
    assert answer.messages == [e.payload for e in state.events[2:]]
    assert (answer.cursor, answer.more) == (Cursor("e1", 5), False)
    body = json.loads(answer.body("en"))
    assert body["cursor"] == "e1:5" and body["more"] is False
    assert [m["cursor"] for m in body["messages"]] == ["e1:3", "e1:4", "e1:5"]


def test_a_page_ends_at_its_last_event_and_says_more() -> None:
    state = state_with(5)
    first = run(state, Cursor("e1", 0), limit=2)
    assert [json.loads(m)["cursor"] for m in first.messages] == ["e1:1", "e1:2"]
    assert (first.cursor, first.more) == (Cursor("e1", 2), True)
    rest = run(state, first.cursor, limit=2)
    assert (rest.cursor, rest.more) == (Cursor("e1", 4), True)
    last = run(state, rest.cursor, limit=2)
    assert (last.cursor, last.more, len(last.messages)) == (Cursor("e1", 5), False, 1)


def test_nothing_new_is_an_empty_list_at_the_same_cursor() -> None:
    answer = run(state_with(3), Cursor("e1", 3))
    assert (answer.messages, answer.cursor, answer.more) == ([], Cursor("e1", 3), False)


def test_no_cursor_is_a_snapshot_and_a_lost_cursor_a_reset_snapshot() -> None:
    state = state_with(2)
    fresh = json.loads(run(state, None).messages[0])
    assert fresh["type"] == "snapshot" and fresh["reset"] is False and len(fresh["items"]) == 2
    for lost in (Cursor("other", 1), Cursor("e1", 9)):
        reset = json.loads(run(state, lost).messages[0])
        assert reset["type"] == "snapshot" and reset["reset"] is True
        assert reset["cursor"] == "e1:2"


def test_a_filtered_reader_moves_past_events_it_does_not_want() -> None:
    state = state_with(4, regions=["Europe"])
    answer = run(state, Cursor("e1", 1), Subscription("en", region="Africa"))
    assert answer.messages == [] and answer.cursor == Cursor("e1", 4)


def test_the_etag_follows_the_edition_cursor() -> None:
    assert etag(Cursor("e1", 4)) == '"e1:4"' != etag(Cursor("e1", 5))
