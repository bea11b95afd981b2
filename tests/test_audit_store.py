"""The audit trail in both stores: one entry per change, written with it or not at all,
kept by time, read newest first in pages."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from test_broker_conformance import LIMITS, VOCABULARY, new_item

from ticker import audit
from ticker.audit import AuditEntry, AuditQuery
from ticker.brokers.base import Broker, BrokerUnavailable, Change, VersionConflict
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker
from ticker.expiry import sweep
from ticker.items import correct, create, withdraw


async def tick() -> None:
    """Entries of different streams (Redis: one per edition) are ordered by the store's
    clock; within one millisecond their order is not defined."""
    await asyncio.sleep(0.003)


BY = audit.Request(actor="amal", role="editor", address="203.0.113.7", user_agent="test/1")


async def entries(broker: Broker, **filters: Any) -> list[AuditEntry]:
    page = await broker.audit.query(AuditQuery(limit=500, **filters), datetime.now(UTC))
    return page.entries


async def test_every_change_path_writes_exactly_one_entry(broker: Broker) -> None:
    item = new_item("First")
    await broker.publish(Change("posted", item, audit=audit.for_item("posted", None, item, BY)))
    assert [e.action for e in await entries(broker)] == ["posted"]
    await tick()

    fixed = correct(
        item, {"headline": "Second"}, editor="amal", vocabulary=VOCABULARY, limits=LIMITS
    )
    await broker.publish(
        Change(
            "corrected",
            fixed,
            expected_version=1,
            audit=audit.for_item("corrected", item, fixed, BY),
        )
    )
    gone = withdraw(fixed, editor="amal")
    await broker.publish(
        Change(
            "withdrawn",
            gone,
            expected_version=2,
            audit=audit.for_item("withdrawn", fixed, gone, BY),
        )
    )
    due = create(
        {"edition": "ar", "headline": "عاجل", "expires_in": 1},
        editor="amal",
        vocabulary=VOCABULARY,
        limits=LIMITS,
        now=datetime.now(UTC) - timedelta(seconds=5),
    )
    await tick()
    await broker.publish(Change("posted", due, audit=audit.for_item("posted", None, due, BY)))
    await tick()
    await sweep(broker)  # the expiry sweeper, as the service runs it
    await tick()

    await broker.tokens.add("amal", "d1", "2026-01-01T00:00:00.000Z", roles=("editor",))
    await broker.tokens.rotate("amal", "d2")
    await broker.tokens.revoke("amal")
    assert not await broker.tokens.revoke("amal")  # already revoked: no change, no entry

    found = await entries(broker)
    assert [e.action for e in found] == [
        "token.revoked",
        "token.rotated",
        "token.created",
        "expired",
        "posted",
        "withdrawn",
        "corrected",
        "posted",
    ]
    assert len({e.id for e in found}) == len(found)
    expired = found[3]
    assert (expired.actor, expired.role, expired.item, expired.edition) == (
        "system",
        "system",
        due.id,
        "ar",
    )
    assert expired.changes["status"] == ["live", "expired"]
    corrected = found[6]
    assert corrected.changes["headline"] == ["First", "Second"]
    assert corrected.changes["version"] == [1, 2]
    assert "source" not in corrected.changes
    assert (corrected.actor, corrected.role, corrected.address, corrected.user_agent) == (
        "amal",
        "editor",
        "203.0.113.7",
        "test/1",
    )
    assert found[7].changes["headline"] == [None, "First"]
    assert found[2].subject == "amal" and found[2].item is None
    for entry in found:
        assert entry.at is not None and entry.at.endswith("Z")
        assert abs(datetime.fromisoformat(entry.at) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_failed_change_writes_no_entry(broker: Broker) -> None:
    item = new_item()
    await broker.publish(Change("posted", item))
    with pytest.raises(VersionConflict):
        await broker.publish(Change("posted", item))  # the id exists
    fixed = correct(
        item, {"headline": "Again"}, editor="desk", vocabulary=VOCABULARY, limits=LIMITS
    )
    with pytest.raises(VersionConflict):
        await broker.publish(Change("corrected", fixed, expected_version=7))
    # An idempotent retry changes nothing, and records nothing.
    again = new_item("Once")
    change = Change("posted", again, idempotency_key="k", fingerprint="f")
    await broker.publish(change)
    assert (await broker.publish(change)).replayed
    await tick()
    await broker.tokens.add("amal", "d1", "2026-01-01T00:00:00.000Z")
    assert not await broker.tokens.revoke("nobody")
    assert not await broker.tokens.rotate("nobody", "d9")
    assert [e.action for e in await entries(broker)] == ["token.created", "posted", "posted"]


async def test_the_change_is_refused_when_its_entry_cannot_be_written(
    broker: Broker, tmp_path: Any
) -> None:
    """The item and its entry are stored together or not at all."""
    if isinstance(broker, EmbeddedBroker):
        broker.db.execute(
            "CREATE TEMP TRIGGER no_room BEFORE INSERT ON audit"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        failure: type[Exception] = BrokerUnavailable
    else:
        assert isinstance(broker, RedisBroker)
        # A key in the audit stream's place that is not a stream: XADD would fail.
        await broker._redis.set("ticker:{en}:audit", "not a stream")
        await broker._redis.set("ticker:{tokens}:audit", "not a stream")
        failure = ResponseError
    item = new_item()
    with pytest.raises(failure):
        await broker.publish(Change("posted", item))
    assert await broker.get(item.id) is None
    cursor, live = await broker.live("en")
    assert live == [] and cursor.offset == 0
    with pytest.raises(failure):
        await broker.tokens.add("amal", "d1", "2026-01-01T00:00:00.000Z")
    assert await broker.tokens.lookup("d1") is None


async def test_filters_and_pages_newest_first(broker: Broker) -> None:
    posted = []
    for n in range(7):
        item = new_item(f"Item {n}", edition="en" if n % 2 else "ar")
        by = audit.Request(actor="amal" if n < 4 else "omar", role="editor")
        await broker.publish(Change("posted", item, audit=audit.for_item("posted", None, item, by)))
        posted.append(item)
        await tick()
    await broker.tokens.add("ops", "d1", "2026-01-01T00:00:00.000Z", roles=("admin",))

    seen: list[AuditEntry] = []
    cursor = None
    pages = 0
    while True:
        page = await broker.audit.query(AuditQuery(limit=3, cursor=cursor), datetime.now(UTC))
        seen += page.entries
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
        assert pages < 10
    assert [e.item for e in seen] == [None, *(i.id for i in reversed(posted))]
    assert len({e.id for e in seen}) == 8

    assert [e.item for e in await entries(broker, edition="ar")] == [
        posted[6].id,
        posted[4].id,
        posted[2].id,
        posted[0].id,
    ]
    assert [e.item for e in await entries(broker, editor="omar")] == [
        posted[6].id,
        posted[5].id,
        posted[4].id,
    ]
    assert [e.item for e in await entries(broker, item=posted[3].id)] == [posted[3].id]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await entries(broker, since=later) == []
    assert len(await entries(broker, until=later)) == 8
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    assert await entries(broker, until=earlier) == []
    with pytest.raises(audit.AuditQueryError):
        await broker.audit.query(
            AuditQuery(cursor=audit.encode_cursor(["x", 1])), datetime.now(UTC)
        )


async def test_entries_are_kept_by_time(broker: Broker) -> None:
    await broker.publish(Change("posted", new_item()))
    await broker.audit.record(AuditEntry("webhook.created", "ops", role="admin", subject="w1"))
    now = datetime.now(UTC)
    assert len(await entries(broker)) == 2
    # Read 91 days on, past the 90-day retention: nothing shows, even before trimming,
    later = now + timedelta(days=91)
    page = await broker.audit.query(AuditQuery(), later)
    assert page.entries == []
    # and pruning drops the entries themselves.
    assert await broker.audit.prune(now) == 0
    assert await broker.audit.prune(later) == 2
    assert len(await entries(broker)) == 0


async def test_redis_trims_each_stream_by_time_as_it_writes(redis_url: str) -> None:
    broker = RedisBroker(redis_url, editions=("en",), audit_days=1)
    await broker.start()
    raw = aioredis.Redis.from_url(redis_url)
    try:
        old_ms = int((datetime.now(UTC) - timedelta(days=2)).timestamp() * 1000)
        await raw.xadd("ticker:{en}:audit", {"entry": "{}"}, id=f"{old_ms}-0")
        await broker.publish(Change("posted", new_item()))
        ids = [i for i, _ in await raw.xrange("ticker:{en}:audit")]
        assert len(ids) == 1 and int(ids[0].split(b"-")[0]) > old_ms
    finally:
        await raw.aclose()
        await broker.close()


async def test_sqlite_prunes_on_the_sweepers_schedule(tmp_path: Any) -> None:
    broker = EmbeddedBroker(tmp_path / "t.db", editions=("en",), audit_days=1)
    await broker.start()
    try:
        old_ms = int((datetime.now(UTC) - timedelta(days=2)).timestamp() * 1000)
        broker.db.execute(
            "INSERT INTO audit (at_ms, actor, body) VALUES (?, 'x', '{\"action\":\"posted\"}')",
            (old_ms,),
        )
        await broker.due(datetime.now(UTC))  # what the sweeper asks on each pass
        assert broker.db.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
    finally:
        await broker.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 0


async def test_redis_reads_a_bounded_part_of_each_stream_per_page(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter that matches little reads at most so many entries per page; following the
    cursor still finds every match, once, newest first."""
    from ticker.brokers import redis as redis_broker

    monkeypatch.setattr(redis_broker, "_AUDIT_SCAN", 3)
    monkeypatch.setattr(redis_broker, "_AUDIT_BATCH", 2)
    broker = RedisBroker(redis_url, editions=("en", "ar"))
    await broker.start()
    try:
        wanted = []
        for n in range(12):
            item = new_item(f"Item {n}", edition="en" if n % 3 else "ar")
            by = audit.Request(actor="omar" if n in (1, 6, 7, 11) else "amal", role="editor")
            await broker.publish(
                Change("posted", item, audit=audit.for_item("posted", None, item, by))
            )
            if by.actor == "omar":
                wanted.append(item.id)
            await tick()
        seen: list[str | None] = []
        cursor = None
        for _ in range(30):
            page = await broker.audit.query(
                AuditQuery(editor="omar", limit=2, cursor=cursor), datetime.now(UTC)
            )
            assert len(page.entries) <= 2
            seen += [e.item for e in page.entries]
            cursor = page.cursor
            if cursor is None:
                break
        assert seen == list(reversed(wanted))
    finally:
        await broker.close()
