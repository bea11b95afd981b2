"""One suite for every broker: the embedded and the Redis broker must behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ticker.archive import ArchiveQuery, record_key
from ticker.archive import words as archive_words
from ticker.brokers import embedded, redis
from ticker.brokers.base import (
    Broker,
    Change,
    IdempotencyMismatch,
    PinLimitReached,
    Published,
    VersionConflict,
)
from ticker.config import Limits, Vocabulary
from ticker.events import EditionState, Event, event_body, event_payload
from ticker.items import Item, correct, create, expire, parse_time, release, withdraw

VOCABULARY = Vocabulary()
LIMITS = Limits()
T0 = datetime.now(UTC).replace(microsecond=0)


def new_item(headline: str = "Quake hits the coast", edition: str = "en", **fields: Any) -> Item:
    payload = {"edition": edition, "headline": headline, **fields}
    return create(payload, editor="desk", vocabulary=VOCABULARY, limits=LIMITS, now=T0)


async def post(broker: Broker, headline: str = "Quake hits the coast", **fields: Any) -> Item:
    item = new_item(headline, **fields)
    await broker.publish(Change("posted", item))
    return item


async def fix(broker: Broker, item: Item, **changes: Any) -> Published:
    fixed = correct(item, changes, editor="chief", vocabulary=VOCABULARY, limits=LIMITS)
    return await broker.publish(Change("corrected", fixed, expected_version=item.version))


async def next_of(follower: AsyncIterator[EditionState | Event]) -> EditionState | Event:
    return await asyncio.wait_for(anext(follower), timeout=5)


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


async def test_cursors_count_up_under_one_epoch(broker: Broker) -> None:
    item = new_item()
    posted = await broker.publish(Change("posted", item))
    corrected = await fix(broker, item, headline="Strong quake hits the coast")
    gone = withdraw(corrected.item, editor="chief")
    withdrawn = await broker.publish(Change("withdrawn", gone, expected_version=2))
    other = new_item("Floods in the north")
    await broker.publish(Change("posted", other))
    expired = await broker.publish(Change("expired", expire(other), expected_version=1))

    cursors = [p.cursor for p in (posted, corrected, withdrawn, expired)]
    assert all(c is not None for c in cursors)
    assert [c.offset for c in cursors if c] == [1, 2, 3, 5]
    assert len({c.epoch for c in cursors if c}) == 1
    assert posted.item == item and not posted.replayed
    assert await broker.get(item.id) is None
    assert await broker.get(other.id) is None


async def test_editions_count_apart(broker: Broker) -> None:
    await post(broker, "English one")
    arabic = await broker.publish(Change("posted", new_item("عاجل", edition="ar")))
    assert arabic.cursor is not None and arabic.cursor.offset == 1
    assert (await broker.state("en")).offset == 1
    assert (await broker.state("es")).offset == 0


async def test_fresh_edition_keeps_its_epoch(broker: Broker) -> None:
    empty = await broker.state("es")
    assert empty.epoch and empty.offset == 0 and empty.items == [] and empty.events == []
    assert (await broker.state("es")).epoch == empty.epoch
    published = await broker.publish(Change("posted", new_item(edition="es")))
    assert published.cursor is not None and published.cursor.epoch == empty.epoch


async def test_get_returns_the_live_item(broker: Broker) -> None:
    item = await post(broker, "Markets open lower", regions=["Europe"], categories=["Economy"])
    assert await broker.get(item.id) == item
    fixed = await fix(broker, item, headline="Markets open sharply lower")
    assert await broker.get(item.id) == fixed.item


@pytest.mark.parametrize("item_id", ["en-doesnotexist", "xx-abcdef", "nodash", ""])
async def test_get_of_unknown_id_is_none(broker: Broker, item_id: str) -> None:
    await post(broker)
    assert await broker.get(item_id) is None


async def test_state_holds_live_items_and_exact_history(broker: Broker) -> None:
    kept = await post(broker, "Kept")
    dropped = await post(broker, "Dropped")
    await broker.publish(Change("withdrawn", withdraw(dropped, editor="chief"), expected_version=1))
    state = await broker.state("en")

    assert state.offset == 3
    assert by_id(state.items) == {kept.id: kept.to_dict()}
    assert [e.kind for e in state.events] == ["posted", "posted", "withdrawn"]
    assert [e.cursor.offset for e in state.events] == [1, 2, 3]
    first = state.events[0]
    assert first.payload == event_payload(first.cursor, event_body("posted", "en", kept.to_json()))
    assert first.item == kept.to_dict()


async def test_follow_yields_states_then_events_byte_for_byte(broker: Broker) -> None:
    before = await post(broker, "Before the follower")
    follower = broker.follow(("en", "ar"))
    try:
        # Each edition's state comes before its events; across editions, in any order (on
        # a cluster each edition is followed on its own shard).
        states = [await next_of(follower), await next_of(follower)]
        assert all(isinstance(s, EditionState) for s in states)
        by_edition = {s.edition: s for s in states if isinstance(s, EditionState)}
        assert sorted(by_edition) == ["ar", "en"]
        en = by_edition["en"]
        assert by_id(en.items) == {before.id: before.to_dict()}
        assert [e.payload for e in en.events] == [
            e.payload for e in (await broker.state("en")).events
        ]

        first = await post(broker, "First")
        arabic = await broker.publish(Change("posted", new_item("خبر", edition="ar")))
        fixed = await fix(broker, first, headline="First, corrected")
        got = [await next_of(follower) for _ in range(3)]
    finally:
        await follower.aclose()

    assert all(isinstance(e, Event) for e in got)
    events = [e for e in got if isinstance(e, Event)]
    english = [e for e in events if e.edition == "en"]
    assert [(e.cursor.offset, e.kind) for e in english] == [(2, "posted"), (3, "corrected")]
    assert [e.item["id"] for e in events if e.edition == "ar"] == [arabic.item.id]
    assert english[1].item == fixed.item.to_dict()
    assert {e.cursor.epoch for e in english} == {en.epoch}
    history = (await broker.state("en")).events
    assert [e.payload for e in history[1:]] == [e.payload for e in english]


async def test_stale_correction_conflicts_and_writes_nothing(broker: Broker) -> None:
    item = await post(broker)
    fixed = await fix(broker, item, headline="Fixed once")
    with pytest.raises(VersionConflict) as raised:
        await fix(broker, item, headline="Fixed from a stale copy")
    assert raised.value.item_id == item.id and raised.value.current == 2
    state = await broker.state("en")
    assert state.offset == 2 and len(state.events) == 2
    assert await broker.get(item.id) == fixed.item


async def test_change_to_a_vanished_item_conflicts(broker: Broker) -> None:
    item = await post(broker)
    await broker.publish(Change("withdrawn", withdraw(item, editor="chief"), expected_version=1))
    with pytest.raises(VersionConflict) as raised:
        await fix(broker, item, headline="Too late")
    assert raised.value.current is None
    assert (await broker.state("en")).offset == 2


async def test_posting_an_existing_id_conflicts(broker: Broker) -> None:
    item = await post(broker)
    with pytest.raises(VersionConflict) as raised:
        await broker.publish(Change("posted", item))
    assert raised.value.current == 1
    assert (await broker.state("en")).offset == 1


async def test_idempotent_retry_returns_the_first_result(broker: Broker) -> None:
    item = new_item()
    first = await broker.publish(Change("posted", item, idempotency_key="k1", fingerprint="f1"))
    # A retried request builds a new item (new id, new time); the first one must win.
    retry = Change("posted", new_item(), idempotency_key="k1", fingerprint="f1")
    again = await broker.publish(retry)

    assert first.cursor is not None and not first.replayed
    assert again.replayed and again.cursor is None and again.item == item
    assert (await broker.state("en")).offset == 1


async def test_reused_idempotency_key_with_other_content_is_refused(broker: Broker) -> None:
    await broker.publish(Change("posted", new_item(), idempotency_key="k2", fingerprint="f1"))
    other = new_item("Something else")
    with pytest.raises(IdempotencyMismatch):
        await broker.publish(Change("posted", other, idempotency_key="k2", fingerprint="f2"))
    assert (await broker.state("en")).offset == 1
    assert await broker.get(other.id) is None


async def test_history_keeps_the_newest_events(broker: Broker) -> None:
    for n in range(55):
        await post(broker, f"Alert {n}")
    state = await broker.state("en")
    assert state.offset == 55 and len(state.items) == 55
    assert [e.cursor.offset for e in state.events] == list(range(6, 56))


async def test_due_lists_live_items_whose_time_has_passed(broker: Broker) -> None:
    soon = await post(broker, "Soon", expires_in=60)
    later = await post(broker, "Later", expires_in=3600)
    await post(broker, "Forever")
    arabic = new_item("قريبا", edition="ar", expires_in=120)
    await broker.publish(Change("posted", arabic))
    withdrawn = await post(broker, "Withdrawn", expires_in=30)
    await broker.publish(
        Change("withdrawn", withdraw(withdrawn, editor="chief"), expected_version=1)
    )
    cleared = await post(broker, "Cleared", expires_in=30)
    await fix(broker, cleared, expires=None)

    assert await broker.due(T0 + timedelta(seconds=59)) == []
    assert [i.id for i in await broker.due(T0 + timedelta(seconds=60))] == [soon.id]
    at_200 = await broker.due(T0 + timedelta(seconds=200))
    assert sorted(i.id for i in at_200) == sorted([soon.id, arabic.id])
    assert len(await broker.due(T0 + timedelta(hours=2), limit=2)) == 2
    assert later.id in {i.id for i in await broker.due(T0 + timedelta(hours=2))}

    await broker.publish(Change("expired", expire(soon), expected_version=1))
    assert soon.id not in {i.id for i in await broker.due(T0 + timedelta(seconds=200))}


async def test_live_lists_current_items_with_the_cursor(broker: Broker) -> None:
    empty_cursor, empty = await broker.live("es")
    assert empty == [] and empty_cursor.offset == 0
    kept = await post(broker, "Kept")
    gone = await post(broker, "Gone")
    await broker.publish(Change("withdrawn", withdraw(gone, editor="desk"), expected_version=1))
    cursor, live = await broker.live("en")
    assert [i["id"] for i in live] == [kept.id]
    assert cursor == (await broker.state("en")).cursor and cursor.offset == 3


async def test_a_replay_finds_the_first_item_after_it_changed(broker: Broker) -> None:
    """Only the id and version are kept for a key: the item as first published comes from
    the history once it was corrected, then the newest known form once that is trimmed."""
    item = new_item("First words")
    await broker.publish(Change("posted", item, idempotency_key="k3", fingerprint="f"))
    fixed = await fix(broker, item, headline="Better words")

    retry = Change("posted", new_item(), idempotency_key="k3", fingerprint="f")
    assert (await broker.publish(retry)).item == item

    gone = withdraw(fixed.item, editor="chief")
    await broker.publish(Change("withdrawn", gone, expected_version=2))
    assert (await broker.publish(retry)).item == item
    for n in range(49):  # trims the posted and corrected events (history is 50)
        await post(broker, f"Filler {n}")
    assert (await broker.publish(retry)).item == gone
    await post(broker, "One more")  # trims the withdrawal too
    minimal = await broker.publish(retry)
    assert minimal.replayed and minimal.cursor is None
    assert (minimal.item.id, minimal.item.version, minimal.item.status) == (item.id, 1, "withdrawn")
    assert (await broker.state("en")).offset == 53


async def test_cursor_is_where_the_log_stands(broker: Broker) -> None:
    assert await broker.cursor("es") == (await broker.state("es")).cursor
    await post(broker, "Moves it")
    assert await broker.cursor("en") == (await broker.live("en"))[0]
    assert (await broker.cursor("en")).offset == 1


# --- the archive -------------------------------------------------------------------------------


def dated(headline: str, ms: int, editor: str = "desk", edition: str = "en") -> Item:
    """An item posted `ms` milliseconds after T0, so the archive's order is known."""
    payload = {"edition": edition, "headline": headline}
    when = T0 + timedelta(milliseconds=ms)
    return create(payload, editor=editor, vocabulary=VOCABULARY, limits=LIMITS, now=when)


async def everything(broker: Broker, **asked: Any) -> list[dict[str, Any]]:
    """Every page of an archive query, followed to its end."""
    found: list[dict[str, Any]] = []
    query = ArchiveQuery(**{"edition": "en", **asked})
    while True:
        page = await broker.archive(query)
        assert len(page.items) <= query.limit
        found += page.items
        if page.next is None:
            return found
        assert query.below is None or page.next < query.below
        query = replace(query, below=page.next)


def headlines(items: list[dict[str, Any]]) -> list[str]:
    return [item["headline"] for item in items]


async def test_the_archive_keeps_every_item_at_its_latest_version(broker: Broker) -> None:
    first = dated("Quake hits the coast", 1)
    second = dated("Floods in the north", 2)
    third = dated("Storm over the bay", 3)
    await broker.publish(Change("posted", dated("عاجل: انفجار", 4, edition="ar")))
    for item in (first, second, third):
        await broker.publish(Change("posted", item))
    fixed = await fix(broker, first, headline="Strong quake hits the coast")
    await broker.publish(Change("withdrawn", withdraw(fixed.item, editor="chief"), 2))
    await broker.publish(Change("expired", expire(second), expected_version=1))

    found = await everything(broker)
    assert [(i["headline"], i["status"], i["version"]) for i in found] == [
        ("Storm over the bay", "live", 1),
        ("Floods in the north", "expired", 2),
        ("Strong quake hits the coast", "withdrawn", 3),
    ]
    assert found[2]["editor"] == "chief" and found[2]["id"] == first.id
    assert headlines(await everything(broker, status="live")) == ["Storm over the bay"]
    assert headlines(await everything(broker, status="expired")) == ["Floods in the north"]
    assert [i["status"] for i in await everything(broker, status="withdrawn")] == ["withdrawn"]
    assert headlines(await everything(broker, edition="ar")) == ["عاجل: انفجار"]
    assert await everything(broker, edition="es") == []


async def test_the_archive_searches_words_editors_and_times(broker: Broker) -> None:
    spanish = dated("Crisis POLÍTICA en Perú", 10, editor="ana")
    plain = dated("La politica del agua", 20)
    other = dated("Nothing to see here", 30, editor="ana")
    for item in (spanish, plain, other):
        await broker.publish(Change("posted", item))
    corrected = correct(
        other, {"headline": "Agua para todos"}, editor="luis", vocabulary=VOCABULARY, limits=LIMITS
    )
    await broker.publish(Change("corrected", corrected, expected_version=1))

    def words_of(text: str) -> tuple[str, ...]:
        return tuple(archive_words(text))

    assert headlines(await everything(broker, words=words_of("política"))) == [
        "La politica del agua",
        "Crisis POLÍTICA en Perú",
    ]
    assert headlines(await everything(broker, words=words_of("PERU politica"))) == [
        "Crisis POLÍTICA en Perú"
    ]
    # A correction is searched as it reads now; its old words find nothing.
    assert await everything(broker, words=words_of("nothing")) == []
    assert headlines(await everything(broker, words=words_of("agua"))) == [
        "Agua para todos",
        "La politica del agua",
    ]
    # An editor finds what they posted, corrected or withdrew.
    assert headlines(await everything(broker, editor="ana")) == [
        "Agua para todos",
        "Crisis POLÍTICA en Perú",
    ]
    assert headlines(await everything(broker, editor="luis")) == ["Agua para todos"]
    assert await everything(broker, editor="nobody") == []
    assert await everything(broker, words=words_of("agua"), status="withdrawn") == []
    # from is inclusive, to exclusive, on the time the item was first posted.
    at = record_key(plain.to_dict()).partition(":")[0] + ":"
    assert headlines(await everything(broker, at_least=at)) == [
        "Agua para todos",
        "La politica del agua",
    ]
    assert headlines(await everything(broker, below=at)) == ["Crisis POLÍTICA en Perú"]


async def test_archive_pages_neither_repeat_nor_skip_while_items_arrive(broker: Broker) -> None:
    # Several items share a millisecond: the id orders them.
    old = [dated(f"Old item {n}", n // 3) for n in range(23)]
    for item in old:
        await broker.publish(Change("posted", item))
    query = ArchiveQuery("en", limit=5)
    seen: list[dict[str, Any]] = []
    newer = 1000
    while True:
        page = await broker.archive(query)
        seen += page.items
        # Newer items, a correction and a withdrawal between pages change nothing in paging.
        newer += 1
        await broker.publish(Change("posted", dated(f"New item {newer}", newer)))
        if page.next is None:
            break
        query = replace(query, below=page.next)
    keys = [record_key(item) for item in seen]
    assert keys == sorted(keys, reverse=True)
    assert sorted(item["id"] for item in seen) == sorted(item.id for item in old)


async def test_a_query_whose_terms_rarely_meet_is_bounded(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (embedded, redis):
        monkeypatch.setattr(module, "SCAN_BUDGET", 8)
    # 12 items say alpha, 20 say beta, and only two say both.
    for n in range(30):
        words = ["alpha"] * (n < 12) + ["beta"] * (n >= 10)
        await broker.publish(Change("posted", dated(" ".join([*words, str(n)]), n)))
    query = ArchiveQuery("en", words=("alpha", "beta"), limit=3)
    page = await broker.archive(query)
    # The eight newest alpha items were examined: a short page, and where to go on.
    assert headlines(page.items) == ["alpha beta 11", "alpha beta 10"]
    assert page.next is not None
    following = await broker.archive(replace(query, below=page.next))
    assert following.items == [] and following.next is None
    found = await everything(broker, words=("beta", "alpha"), limit=1)
    assert headlines(found) == ["alpha beta 11", "alpha beta 10"]


async def test_a_prune_removes_old_items_that_are_no_longer_live(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (embedded, redis):
        monkeypatch.setattr(module, "PRUNE_BATCH", 2)
    gone, expired, live, recent = (dated(f"Harbour news {n}", n) for n in range(4))
    for item in (gone, expired, live, recent):
        await broker.publish(Change("posted", item))
    await broker.publish(Change("withdrawn", withdraw(gone, editor="chief"), 1))
    await broker.publish(Change("expired", expire(expired), expected_version=1))
    await broker.publish(Change("withdrawn", withdraw(recent, editor="chief"), 1))
    await broker.publish(Change("posted", dated("Harbour news in Arabic", 0, edition="ar")))

    assert await broker.prune_archive("en", record_key(recent.to_dict())) == 2
    assert headlines(await everything(broker)) == ["Harbour news 3", "Harbour news 2"]
    # Nothing of the pruned items is left to find.
    assert headlines(await everything(broker, words=("harbour",))) == [
        "Harbour news 3",
        "Harbour news 2",
    ]
    assert headlines(await everything(broker, editor="chief")) == ["Harbour news 3"]
    assert await everything(broker, status="expired") == []
    assert headlines(await everything(broker, edition="ar")) == ["Harbour news in Arabic"]
    # Pruning again removes nothing; the live item goes on being archived.
    assert await broker.prune_archive("en", record_key(recent.to_dict())) == 0
    await broker.publish(Change("withdrawn", withdraw(live, editor="desk"), 1))
    assert [i["status"] for i in await everything(broker, words=("2",))] == ["withdrawn"]


# --- scheduled items and pins -------------------------------------------------------------


def scheduled_item(headline: str = "Embargoed report", *, seconds: float = 3600) -> Item:
    when = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return new_item(headline, publish_at=when)


async def test_a_scheduled_item_waits_apart_from_the_live_ones(broker: Broker) -> None:
    soon, later = scheduled_item("Soon", seconds=60), scheduled_item("Later", seconds=120)
    await broker.schedule(later)
    published = await broker.schedule(soon)
    assert published.cursor is None and published.item == soon

    state = await broker.state("en")
    assert (state.offset, state.items, state.events) == (0, [], [])
    assert (await broker.live("en"))[1] == []
    assert await broker.get(soon.id) is None
    assert [i.id for i in await broker.scheduled("en")] == [soon.id, later.id]
    assert await broker.scheduled("ar") == []
    assert await broker.get_scheduled(soon.id) == soon
    assert await broker.due_scheduled(datetime.now(UTC)) == []
    assert [
        i.id for i in await broker.due_scheduled(datetime.now(UTC) + timedelta(seconds=90))
    ] == [soon.id]
    upcoming = await broker.next_scheduled()
    assert upcoming is not None and abs(upcoming - parse_time(soon.publish_at or "")) < timedelta(
        milliseconds=2
    )


async def test_a_release_claims_the_scheduled_item_once(broker: Broker) -> None:
    item = scheduled_item()
    await broker.schedule(item)
    follower = broker.follow(("en",))
    await next_of(follower)
    live = release(item)

    results = await asyncio.gather(
        *(broker.publish(Change("posted", live, scheduled_version=1)) for _ in range(2)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Published) for r in results) == 1
    assert sum(isinstance(r, VersionConflict) for r in results) == 1
    event = await next_of(follower)
    assert isinstance(event, Event) and (event.kind, event.item["status"]) == ("posted", "live")
    assert event.item["version"] == 2
    assert await broker.get_scheduled(item.id) is None
    assert await broker.scheduled("en") == []
    assert await broker.next_scheduled() is None
    assert await broker.get(item.id) == live
    with pytest.raises(VersionConflict):  # a later release finds nothing to claim
        await broker.publish(Change("posted", live, scheduled_version=1))


async def test_a_scheduled_item_changes_and_cancels_by_version(broker: Broker) -> None:
    item = scheduled_item()
    await broker.schedule(item)
    with pytest.raises(VersionConflict):  # a new item with an id that is taken
        await broker.schedule(item)
    edited = correct(
        item, {"headline": "Edited"}, editor="chief", vocabulary=VOCABULARY, limits=LIMITS
    )
    await broker.schedule(edited, expected_version=1)
    with pytest.raises(VersionConflict) as stale:
        await broker.schedule(edited, expected_version=1)
    assert stale.value.current == 2
    assert (await broker.get_scheduled(item.id)) == edited
    # A release made from the copy before the edit claims nothing.
    with pytest.raises(VersionConflict):
        await broker.publish(Change("posted", release(item), scheduled_version=1))

    with pytest.raises(VersionConflict):
        await broker.unschedule(item.id, 1)
    await broker.unschedule(item.id, 2)
    assert await broker.get_scheduled(item.id) is None
    with pytest.raises(VersionConflict):
        await broker.publish(Change("posted", release(edited), scheduled_version=2))
    assert (await broker.state("en")).offset == 0


async def test_a_scheduled_post_retried_with_its_key_lands_once(broker: Broker) -> None:
    item = scheduled_item()
    first = await broker.schedule(item, idempotency_key="desk:k1", fingerprint="f1")
    again = await broker.schedule(scheduled_item(), idempotency_key="desk:k1", fingerprint="f1")
    assert not first.replayed and again.replayed and again.item == item
    with pytest.raises(IdempotencyMismatch):
        await broker.schedule(scheduled_item(), idempotency_key="desk:k1", fingerprint="f2")
    assert [i.id for i in await broker.scheduled("en")] == [item.id]


async def test_pins_are_capped_per_edition(broker: Broker) -> None:
    pinned = [replace(new_item(f"Pinned {n}"), pinned=True) for n in range(3)]
    for item in pinned:
        await broker.publish(Change("posted", item, max_pinned=3))
    fourth = replace(new_item("Pinned 4"), pinned=True)
    with pytest.raises(PinLimitReached):
        await broker.publish(Change("posted", fourth, max_pinned=3))
    assert (await broker.state("en")).offset == 3 and await broker.get(fourth.id) is None
    # Another edition has pins of its own; without a cap nothing is checked.
    await broker.publish(
        Change("posted", replace(new_item("Ar", edition="ar"), pinned=True), max_pinned=1)
    )
    # A pinned item may still be corrected; unpinning or withdrawing frees a place.
    await fix(broker, pinned[0], headline="Pinned, corrected")
    unpinned = correct(
        pinned[1], {"pinned": False}, editor="c", vocabulary=VOCABULARY, limits=LIMITS
    )
    await broker.publish(Change("corrected", unpinned, expected_version=1, max_pinned=3))
    await broker.publish(Change("posted", fourth, max_pinned=3))
    fifth = replace(new_item("Pinned 5"), pinned=True)
    with pytest.raises(PinLimitReached):
        await broker.publish(Change("posted", fifth, max_pinned=3))
    await broker.publish(Change("withdrawn", withdraw(pinned[2], editor="c"), expected_version=1))
    await broker.publish(Change("posted", fifth, max_pinned=3))
    live = by_id((await broker.live("en"))[1])
    assert sum(1 for i in live.values() if i["pinned"]) == 3


async def test_concurrent_pins_never_pass_the_cap(broker: Broker) -> None:
    items = [replace(new_item(f"Pinned {n}"), pinned=True) for n in range(8)]
    results = await asyncio.gather(
        *(broker.publish(Change("posted", item, max_pinned=3)) for item in items),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Published) for r in results) == 3
    assert sum(isinstance(r, PinLimitReached) for r in results) == 5
    assert len((await broker.live("en"))[1]) == 3
