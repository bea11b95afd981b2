"""Scheduled items, the cap of live items and pins, through the publisher's API on both
stores: embargoed items reach no reader before their time, go live within a second of it
as one `posted` event, and the live ticker never holds more than its cap."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stack import Client, Stack
from ticker import items as rules
from ticker.brokers.base import Broker, Change
from ticker.config import Limits, Vocabulary
from ticker.expiry import retire_excess
from ticker.schedule import release_due


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded store, else the URL of an empty Redis."""
    return None if request.param == "embedded" else request.getfixturevalue("redis_url")


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def scheduled_event_count(stack: Stack, item_id: str) -> int:
    state = await stack.broker.state("en")
    return sum(1 for e in state.events if e.item["id"] == item_id and e.kind == "posted")


# --- the API ----------------------------------------------------------------------------


async def test_a_scheduled_item_is_seen_only_by_editors_until_its_time(
    tmp_path: Path, store: str | None
) -> None:
    async with Stack(tmp_path, store) as stack:
        item = await stack.post(headline="Embargoed: results at noon", publish_at=at(3600))
        assert item["status"] == "scheduled" and item["publish_at"]
        assert item["expires"] > item["publish_at"]  # the default expiry counts from then

        listed = await stack.http.get(
            "/api/scheduled", params={"edition": "en"}, headers=stack.auth
        )
        assert listed.status_code == 200
        assert listed.json() == {"edition": "en", "items": [item]}
        assert (await stack.http.get("/api/scheduled", params={"edition": "en"})).status_code == 401
        limits = (await stack.http.get("/api/config")).json()["limits"]
        assert (limits["live_items"], limits["pinned_items"]) == (20, 3)
        assert limits["schedule_seconds"] == 30 * 86400
        bad = await stack.http.get("/api/scheduled", params={"edition": "xx"}, headers=stack.auth)
        assert bad.status_code == 400 and "edition" in bad.json()["fields"]

        # Nothing public knows of it.
        assert (await stack.http.get("/api/items", params={"edition": "en"})).json()["items"] == []
        assert (await stack.http.get(f"/api/items/{item['id']}")).status_code == 404
        events = (await stack.http.get("/api/events", params={"edition": "en"})).json()
        assert item["id"] not in str(events)
        for path in ("/feeds/en.rss", "/feeds/en.atom", "/feeds/en.json", "/live/en"):
            assert "Embargoed" not in (await stack.http.get(path)).text, path
        async with Client.connect(stack.ws_url()) as reader:
            assert (await reader.next())["items"] == []


async def test_editors_change_and_cancel_a_scheduled_item(
    tmp_path: Path, store: str | None
) -> None:
    async with Stack(tmp_path, store) as stack:
        item = await stack.post(headline="Embargoed", publish_at=at(3600))
        edited = await stack.correct(item["id"], headline="Embargoed, edited", version=1)
        assert (edited["status"], edited["version"]) == ("scheduled", 2)
        stale = await stack.http.patch(
            f"/api/items/{item['id']}", json={"headline": "x", "version": 1}, headers=stack.auth
        )
        assert stale.status_code == 422 and "is 2 now" in stale.json()["fields"]["version"]
        later = await stack.correct(item["id"], publish_at=at(7200))
        assert later["publish_at"] > edited["publish_at"]
        assert later["expires"] > edited["expires"]  # the expiry moves with it
        past = await stack.http.patch(
            f"/api/items/{item['id']}", json={"publish_at": at(-3600)}, headers=stack.auth
        )
        assert past.status_code == 422 and "publish_at" in past.json()["fields"]

        cancelled = await stack.withdraw(item["id"])
        assert cancelled["id"] == item["id"]
        listed = await stack.http.get(
            "/api/scheduled", params={"edition": "en"}, headers=stack.auth
        )
        assert listed.json()["items"] == []
        assert (await stack.broker.state("en")).offset == 0  # never logged, never announced
        gone = await stack.http.delete(f"/api/items/{item['id']}", headers=stack.auth)
        assert gone.status_code == 404


async def test_bad_schedules_and_pins_name_the_field_and_write_nothing(
    tmp_path: Path, store: str | None
) -> None:
    async with Stack(tmp_path, store) as stack:
        cases = [
            ({"publish_at": at(-60)}, "publish_at", "must not be in the past"),
            ({"publish_at": at(31 * 86400)}, "publish_at", "at most 30 days ahead"),
            ({"publish_at": "tomorrow"}, "publish_at", "ISO 8601"),
            ({"publish_at": "2030-01-01T00:00:00"}, "publish_at", "time zone"),
            ({"publish_at": at(60), "expires": at(30)}, "expires", "after publish_at"),
            ({"pinned": "yes"}, "pinned", "true or false"),
        ]
        for fields, name, words in cases:
            answer = await stack.http.post(
                "/api/items", json={"edition": "en", "headline": "x", **fields}, headers=stack.auth
            )
            assert answer.status_code == 422, (fields, answer.text)
            assert words in answer.json()["fields"][name], (fields, answer.json())
        live = await stack.post(headline="Live now")
        answer = await stack.http.patch(
            f"/api/items/{live['id']}", json={"publish_at": at(60)}, headers=stack.auth
        )
        assert answer.status_code == 422 and "publish_at" in answer.json()["fields"]

        for n in range(3):
            await stack.post(headline=f"Pinned {n}", pinned=True)
        refused = await stack.http.post(
            "/api/items",
            json={"edition": "en", "headline": "4th", "pinned": True},
            headers=stack.auth,
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["fields"] == {"pinned": "at most 3 pinned items per edition"}
        refused = await stack.http.patch(
            f"/api/items/{live['id']}", json={"pinned": True}, headers=stack.auth
        )
        assert refused.status_code == 409 and "pinned" in refused.json()["fields"]
        state = await stack.broker.state("en")
        assert state.offset == 4 and len(state.items) == 4
        assert not any(i["pinned"] for i in state.items if i["id"] == live["id"])
        assert (
            await stack.http.get("/api/scheduled", params={"edition": "en"}, headers=stack.auth)
        ).json()["items"] == []


async def test_pinned_items_come_first_everywhere(tmp_path: Path, store: str | None) -> None:
    async with Stack(tmp_path, store) as stack:
        first = await stack.post(headline="Pinned first")
        await stack.correct(first["id"], pinned=True)
        others = [await stack.post(headline=f"Item {n}") for n in range(3)]
        newest_first = [first["id"]] + [o["id"] for o in reversed(others)]
        listed = (await stack.http.get("/api/items", params={"edition": "en"})).json()["items"]
        assert [i["id"] for i in listed] == newest_first
        async with Client.connect(stack.ws_url()) as reader:
            assert [i["id"] for i in (await reader.next())["items"]] == newest_first


# --- the cap of live items ----------------------------------------------------------------


async def test_a_busy_day_keeps_the_ticker_at_its_cap(tmp_path: Path, store: str | None) -> None:
    """2,000 posts in a day: the live list and every new reader's snapshot hold the cap."""
    async with Stack(tmp_path, store) as stack:
        pinned = await stack.post(headline="Live blog", pinned=True)
        async with Client.connect(stack.ws_url()) as early:
            await early.next()
            kinds: dict[str, int] = {}

            async def read() -> None:
                # The reader that stays sees every retirement as an expiry.
                while sum(kinds.values()) < 2000 + 1981:
                    event = await early.next_event(timeout=30)
                    kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1

            async def poster(worker: int) -> None:
                for n in range(500):
                    await stack.post(headline=f"Update {worker}-{n}")

            reading = asyncio.create_task(read())
            started = time.monotonic()
            await asyncio.gather(*(poster(w) for w in range(4)))
            took = time.monotonic() - started
            live = (await stack.http.get("/api/items", params={"edition": "en"})).json()["items"]
            assert len(live) == 20 and live[0]["id"] == pinned["id"]
            await asyncio.wait_for(reading, 30)
            assert kinds == {"posted": 2000, "expired": 1981}, took
        async with Client.connect(stack.ws_url()) as late:
            snapshot = await late.next()
            assert len(snapshot["items"]) == 20
            assert snapshot["items"][0]["id"] == pinned["id"]
            assert {i["id"] for i in snapshot["items"]} == {i["id"] for i in live}


async def test_the_sweeper_heals_a_ticker_past_its_cap(tmp_path: Path, store: str | None) -> None:
    """Posts straight to the store (as after a crash between a post and its retirement)."""
    async with Stack(tmp_path, store, limits={"max_live": 5}) as stack:
        first = datetime.now(UTC) - timedelta(minutes=1)
        for n in range(12):
            item = rules.create(
                {"edition": "en", "headline": f"Direct {n}"},
                editor="desk",
                vocabulary=stack.settings.vocabulary,
                limits=stack.settings.limits,
                now=first + timedelta(seconds=n),  # one a second: which is oldest is clear
            )
            await stack.broker.publish(Change("posted", item))
        deadline = time.monotonic() + 5
        while len((await stack.broker.live("en"))[1]) > 5:
            assert time.monotonic() < deadline, "the sweeper did not retire the excess"
            await asyncio.sleep(0.05)
        headlines = {i["headline"] for i in (await stack.broker.live("en"))[1]}
        assert headlines == {f"Direct {n}" for n in range(7, 12)}


async def test_retiring_twice_at_once_retires_each_item_once(broker: Broker) -> None:
    vocabulary, limits = Vocabulary(), Limits()
    for n in range(30):
        item = rules.create(
            {"edition": "en", "headline": f"Item {n}", "pinned": n < 2},
            editor="desk",
            vocabulary=vocabulary,
            limits=limits,
        )
        await broker.publish(Change("posted", item))
    retired = await asyncio.gather(*(retire_excess(broker, "en", 20) for _ in range(3)))
    assert sum(retired) == 10
    live = (await broker.live("en"))[1]
    assert len(live) == 20 and sum(1 for i in live if i["pinned"]) == 2
    state = await broker.state("en")
    assert sum(1 for e in state.events if e.kind == "expired") == 10


# --- release ------------------------------------------------------------------------------


async def test_two_release_workers_release_each_item_once(broker: Broker) -> None:
    vocabulary, limits = Vocabulary(), Limits()
    waiting = []
    for n in range(40):
        item = rules.create(
            {"edition": "en", "headline": f"Embargo {n}", "publish_at": at(0.2)},
            editor="desk",
            vocabulary=vocabulary,
            limits=limits,
        )
        await broker.schedule(item)
        waiting.append(item.id)
    await asyncio.sleep(0.3)
    await asyncio.gather(
        release_due(broker, max_live=100, max_pinned=3),
        release_due(broker, max_live=100, max_pinned=3),
    )
    state = await broker.state("en")
    posted = [e.item["id"] for e in state.events if e.kind == "posted"]
    assert sorted(posted) == sorted(waiting)
    assert await broker.scheduled("en") == []


async def test_a_pinned_item_past_the_pin_cap_goes_live_unpinned(broker: Broker) -> None:
    vocabulary, limits = Vocabulary(), Limits(max_pinned=1)
    make = lambda **f: rules.create(  # noqa: E731
        {"edition": "en", **f}, editor="desk", vocabulary=vocabulary, limits=limits
    )
    await broker.publish(Change("posted", make(headline="Pinned", pinned=True), max_pinned=1))
    later = make(headline="Pinned later", pinned=True, publish_at=at(0.1))
    await broker.schedule(later)
    await asyncio.sleep(0.2)
    await release_due(broker, max_live=20, max_pinned=1)
    live = await broker.get(later.id)
    assert live is not None and live.live and not live.pinned


async def test_a_scheduled_item_reaches_a_reader_within_a_second_and_never_before(
    tmp_path: Path, store: str | None
) -> None:
    async with Stack(tmp_path, store) as stack:
        async with Client.connect(stack.ws_url()) as reader:
            assert (await reader.next())["items"] == []
            publish_at = datetime.now(UTC) + timedelta(seconds=2)
            item = await stack.post(headline="Embargo lifts", publish_at=publish_at.isoformat())
            # Until its time: nothing at all.
            await reader.expect_silence(
                max((publish_at - datetime.now(UTC)).total_seconds() - 0.05, 0)
            )
            event = await reader.next_event(timeout=3)
            arrived = datetime.now(UTC)
            assert (event["kind"], event["item"]["id"]) == ("posted", item["id"])
            assert event["item"]["status"] == "live" and event["item"]["version"] == 2
            assert publish_at <= arrived < publish_at + timedelta(seconds=1), arrived - publish_at
            assert rules.parse_time(event["item"]["created"]) >= publish_at
            await reader.expect_silence(0.5)  # once
        assert await scheduled_event_count(stack, item["id"]) == 1
        listed = await stack.http.get(
            "/api/scheduled", params={"edition": "en"}, headers=stack.auth
        )
        assert listed.json()["items"] == []
        # It is live now: an edit made from the scheduled copy is refused.
        stale = await stack.http.patch(
            f"/api/items/{item['id']}", json={"headline": "x", "version": 1}, headers=stack.auth
        )
        assert stale.status_code == 422 and "is 2 now" in stale.json()["fields"]["version"]
