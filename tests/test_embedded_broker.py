"""What only the embedded broker goes through: a damaged file, a second server on the
same file, a failing transaction, and a file that must shrink again."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ticker.brokers.base import BrokerMisconfigured, BrokerUnavailable, Change
from ticker.brokers.embedded import EmbeddedBroker
from ticker.config import Limits, Vocabulary
from ticker.items import Item, create, withdraw

MakeBroker = Callable[..., Awaitable[EmbeddedBroker]]
HEADLINE = "A long enough headline to fill the pages of the file quickly " * 3


def new_item(headline: str = "Quake hits the coast", edition: str = "en") -> Item:
    payload = {"edition": edition, "headline": headline[:200]}
    return create(payload, editor="desk", vocabulary=Vocabulary(), limits=Limits())


async def post(broker: EmbeddedBroker, headline: str = HEADLINE, **change: str) -> Item:
    item = new_item(headline)
    await broker.publish(Change("posted", item, **change))
    return item


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ticker.db"


@pytest.fixture
async def make_broker(db_path: Path) -> AsyncIterator[MakeBroker]:
    made: list[EmbeddedBroker] = []

    async def make(path: Path = db_path, **options: object) -> EmbeddedBroker:
        options = {"editions": ("en", "ar"), "history": 100, **options}
        broker = EmbeddedBroker(path, **options)  # type: ignore[arg-type]
        made.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in made:
        await broker.close()


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def damage(path: Path) -> None:
    """Overwrite pages in the middle of the file, as a bad disk or a stray write would."""
    size = path.stat().st_size
    assert size > 40 * 4096, size
    with path.open("r+b") as out:
        out.seek((size // 2) // 4096 * 4096)
        out.write(b"\xa5" * 8 * 4096)


# --- a failing transaction ---------------------------------------------------------------


async def test_a_failing_transaction_writes_nothing(make_broker: MakeBroker, db_path: Path) -> None:
    broker = await make_broker()
    await post(broker, "Before", idempotency_key="k0", fingerprint="f")
    # The event insert, late in the transaction, fails.
    broker.db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    before = dump(db_path)
    with pytest.raises(BrokerUnavailable, match="full"):
        await post(broker, "Half-written?", idempotency_key="k1", fingerprint="f")
    assert dump(db_path) == before
    assert not broker.db.in_transaction
    broker.db.execute("DROP TRIGGER refuse")
    assert (await broker.publish(Change("posted", new_item()))).cursor.offset == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("options", [{"history": -5}, {"history": 0}, {"history": 1.5}])
def test_settings_that_would_lose_events_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EmbeddedBroker("unused.db", editions=("en",), **options)  # type: ignore[arg-type]


# --- a damaged file ----------------------------------------------------------------------


async def filled(make_broker: MakeBroker, count: int = 600) -> EmbeddedBroker:
    broker = await make_broker()
    for _ in range(count):
        await post(broker)
    return broker


async def test_a_damaged_file_is_refused_at_start(make_broker: MakeBroker, db_path: Path) -> None:
    await (await filled(make_broker)).close()
    damage(db_path)
    with pytest.raises(BrokerMisconfigured) as raised:
        await make_broker()
    message = str(raised.value)
    assert str(db_path) in message and "damaged" in message and "backup" in message
    assert "\n" not in message


async def test_a_file_that_is_no_database_is_refused(
    make_broker: MakeBroker, db_path: Path
) -> None:
    db_path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(BrokerMisconfigured) as raised:
        await make_broker()
    assert str(db_path) in str(raised.value) and "backup" in str(raised.value)


async def test_an_empty_file_starts_a_new_ticker_with_a_warning(
    make_broker: MakeBroker, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ticker.brokers.embedded"):
        broker = await make_broker()
    assert any(str(db_path) in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)
    assert (await broker.state("en")).offset == 0


async def test_damage_found_while_running_is_reported_as_unavailable(
    make_broker: MakeBroker, db_path: Path
) -> None:
    broker = await filled(make_broker)
    broker.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(db_path)
    broker.db.execute("PRAGMA shrink_memory")  # forget cached pages, as time would
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: broker.state("en"),
        lambda: broker.publish(Change("posted", new_item())),
        lambda: broker.due(datetime.now(UTC)),
        broker.ping,
        lambda: broker.live("en"),
        broker.tokens.names,
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable) as raised:
            await call()
        assert "damaged" in str(raised.value) and str(db_path) in str(raised.value)


async def test_ping_runs_an_integrity_check_now_and_then(
    make_broker: MakeBroker, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = await filled(make_broker)
    await broker.ping()
    broker.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(db_path)
    broker.db.execute("PRAGMA shrink_memory")
    monkeypatch.setattr("ticker.brokers.embedded._CHECK_EVERY", 0.0)
    with pytest.raises(BrokerUnavailable, match="damaged"):
        await broker.ping()


# --- one server per file -----------------------------------------------------------------


async def test_a_second_server_on_the_same_file_is_refused(
    make_broker: MakeBroker, db_path: Path
) -> None:
    first = await make_broker(exclusive=True)
    with pytest.raises(BrokerMisconfigured) as raised:
        await make_broker(exclusive=True)
    assert str(db_path) in str(raised.value) and "another ticker server" in str(raised.value)

    # Token commands open the file without the lock, while the server runs.
    command = await make_broker()
    await command.tokens.add("desk", "digest", "2025-01-01T00:00:00.000Z")
    assert await first.tokens.owner("digest") == "desk"
    await command.close()

    await first.close()
    second = await make_broker(exclusive=True)
    assert await second.tokens.owner("digest") == "desk"


async def test_the_lock_holds_across_processes(make_broker: MakeBroker, db_path: Path) -> None:
    import subprocess
    import sys

    await make_broker(exclusive=True)
    script = (
        "import asyncio, sys\n"
        "from ticker.brokers.base import BrokerMisconfigured\n"
        "from ticker.brokers.embedded import EmbeddedBroker\n"
        "b = EmbeddedBroker(sys.argv[1], editions=('en',), exclusive=True)\n"
        "try:\n"
        "    asyncio.run(b.start())\n"
        "except BrokerMisconfigured as exc:\n"
        "    sys.exit(f'refused: {exc}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "refused" in done.stderr and str(db_path) in done.stderr


# --- a file that shrinks -----------------------------------------------------------------


async def test_the_file_shrinks_after_mass_withdrawal_and_a_prune(
    make_broker: MakeBroker, db_path: Path
) -> None:
    broker = await make_broker()
    posted = [await post(broker) for _ in range(4000)]
    broker.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    full = db_path.stat().st_size
    for item in posted:
        await broker.publish(Change("withdrawn", withdraw(item, editor="desk"), expected_version=1))
    # The archive keeps withdrawn items until they are pruned, and the audit trail every
    # change for its retention; once both have passed:
    broker.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db_path.stat().st_size > full / 2
    assert await broker.prune_archive("en", "9999999999999:") == 4000
    assert await broker.audit.prune(datetime.now(UTC) + timedelta(days=91)) == 8000
    await broker.close()
    empty = db_path.stat().st_size
    assert full > 2_000_000, full
    assert empty < full / 4, (full, empty)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert db.execute("PRAGMA freelist_count").fetchone()[0] < 200


async def test_an_old_file_is_made_to_shrink_and_keeps_its_records(
    make_broker: MakeBroker, db_path: Path
) -> None:
    """A file from before: no auto_vacuum, idempotency records holding whole items."""
    item = new_item("Posted by an older ticker")
    with sqlite3.connect(db_path) as db:
        db.executescript(
            """
            CREATE TABLE meta (edition TEXT PRIMARY KEY, epoch TEXT NOT NULL,
                offset INTEGER NOT NULL);
            CREATE TABLE items (id TEXT PRIMARY KEY, edition TEXT NOT NULL,
                json TEXT NOT NULL, expires_ms INTEGER);
            CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                item TEXT NOT NULL, expires_at REAL NOT NULL);
            INSERT INTO meta VALUES ('en', 'e0', 1);
            """
        )
        db.execute("INSERT INTO items VALUES (?, 'en', ?, NULL)", (item.id, item.to_json()))
        db.execute("INSERT INTO idempotency VALUES ('en:k', 'f', ?, 4102444800)", (item.to_json(),))
    broker = await make_broker()
    assert broker.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    again = await broker.publish(Change("posted", new_item(), idempotency_key="k", fingerprint="f"))
    assert again.replayed and again.item == item
    assert (await broker.state("en")).offset == 1


async def test_an_idempotency_record_is_small(make_broker: MakeBroker) -> None:
    broker = await make_broker()
    item = await post(broker, idempotency_key="k" * 40, fingerprint="f" * 32)
    (size,) = broker.db.execute(
        "SELECT length(key) + length(fingerprint) + length(item_id) + 8 + 8 FROM idempotency"
    ).fetchone()
    assert len(item.to_json()) > 300 and size < 120, size
