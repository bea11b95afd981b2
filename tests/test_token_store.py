"""The token stores: one behaviour on both stores, read through the broker's `tokens`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticker.audit import AuditQuery
from ticker.brokers.base import Broker, BrokerError, TokenRecord
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker


async def test_tokens(broker: Broker) -> None:
    tokens = broker.tokens
    await tokens.add("maria", "digest-m", "2025-01-02T00:00:00.000Z")
    await tokens.add("ali", "digest-a", "2025-01-01T00:00:00.000Z")
    with pytest.raises(BrokerError):
        await tokens.add("maria", "digest-other", "2025-01-03T00:00:00.000Z")

    assert await tokens.owner("digest-m") == "maria"
    assert await tokens.owner("digest-other") is None
    assert await tokens.names() == [
        ("ali", "2025-01-01T00:00:00.000Z"),
        ("maria", "2025-01-02T00:00:00.000Z"),
    ]
    assert await tokens.revoke("maria") is True
    assert await tokens.revoke("maria") is False
    assert await tokens.owner("digest-m") is None
    assert await tokens.names() == [("ali", "2025-01-01T00:00:00.000Z")]


async def test_a_revocation_is_seen_by_another_connection_at_once(broker: Broker) -> None:
    """Another publisher process holds its own connection; a revoked token fails there on
    its very next request."""
    await broker.tokens.add("desk", "digest-d", "2025-01-01T00:00:00.000Z")
    other = type(broker)(*_same_store(broker), editions=broker.editions)
    await other.start()
    try:
        assert await other.tokens.owner("digest-d") == "desk"
        assert await broker.tokens.revoke("desk")
        assert await other.tokens.owner("digest-d") is None
    finally:
        await other.close()


def _same_store(broker: Broker) -> tuple[object]:
    return (getattr(broker, "url", None) or broker.path,)  # type: ignore[attr-defined]


async def test_roles_scope_and_expiry_are_kept(broker: Broker) -> None:
    tokens = broker.tokens
    await tokens.add(
        "amal",
        "digest-a",
        "2026-01-01T00:00:00.000Z",
        roles=("editor",),
        editions=("en", "ar"),
        expires="2027-01-01T00:00:00.000Z",
    )
    await tokens.add("boss", "digest-b", "2026-01-01T00:00:00.000Z", roles=("admin", "chief"))
    record = await tokens.lookup("digest-a")
    assert record == TokenRecord(
        "amal",
        "digest-a",
        "2026-01-01T00:00:00.000Z",
        ("editor",),
        ("en", "ar"),
        "2027-01-01T00:00:00.000Z",
    )
    boss = await tokens.lookup("digest-b")
    assert boss is not None and boss.roles == ("admin", "chief") and boss.editions is None
    assert await tokens.lookup("digest-nobody") is None
    assert [r.name for r in await tokens.records()] == ["amal", "boss"]


async def test_revoked_and_rotated_secrets_read_as_revoked(broker: Broker) -> None:
    tokens = broker.tokens
    await tokens.add("amal", "d1", "2026-01-01T00:00:00.000Z", roles=("editor",), editions=("en",))
    assert await tokens.rotate("amal", "d2")
    old, new = await tokens.lookup("d1"), await tokens.lookup("d2")
    assert old is not None and old.revoked and old.name == "amal"
    assert new is not None and not new.revoked and new.editions == ("en",)
    assert new.roles == ("editor",)
    with pytest.raises(BrokerError):  # a secret is never given twice
        await tokens.rotate("amal", "d1")
    assert await tokens.revoke("amal")
    gone = await tokens.lookup("d2")
    assert gone is not None and gone.revoked
    assert not await tokens.rotate("amal", "d3")
    assert await tokens.records() == []
    # A revoked name may be given again; its old secrets stay revoked.
    await tokens.add("amal", "d4", "2026-02-01T00:00:00.000Z", roles=("chief",))
    again = await tokens.lookup("d2")
    assert again is not None and again.revoked
    fresh = await tokens.lookup("d4")
    assert fresh is not None and not fresh.revoked and fresh.roles == ("chief",)


async def test_last_use_is_noted_apart(broker: Broker) -> None:
    await broker.tokens.add("amal", "d1", "2026-01-01T00:00:00.000Z", roles=("editor",))
    await broker.tokens.touch("amal", "2026-03-01T10:00:00.000Z")
    assert await broker.tokens.revoke("amal") or True
    await broker.tokens.add("omar", "d2", "2026-01-01T00:00:00.000Z", roles=("editor",))
    await broker.tokens.touch("omar", "2026-03-02T10:00:00.000Z")
    [omar] = await broker.tokens.records()
    assert omar.last_used == "2026-03-02T10:00:00.000Z"
    # Noting a use never brings a revoked token back.
    amal = await broker.tokens.lookup("d1")
    assert amal is not None and amal.revoked


async def test_tokens_from_before_roles_keep_working_and_migrate(
    broker: Broker, tmp_path: Path
) -> None:
    """Rows and keys written as the store wrote them before roles existed."""
    if isinstance(broker, EmbeddedBroker):
        await broker.close()
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as db:  # the old schema, with one old row
            db.execute(
                "CREATE TABLE tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,"
                " created TEXT NOT NULL)"
            )
            db.execute("INSERT INTO tokens VALUES ('desk', 'd-old', '2025-01-01T00:00:00.000Z')")
        broker = EmbeddedBroker(path, editions=("en", "ar"))
        await broker.start()
    else:
        assert isinstance(broker, RedisBroker)
        raw = broker._redis  # the keys as the code before roles wrote them
        old = json.dumps({"digest": "d-old", "created": "2025-01-01T00:00:00.000Z"})
        await raw.hset("ticker:{tokens}", "desk", old)
        await raw.hset("ticker:{tokens}:digests", "d-old", "desk")
    try:
        record = await broker.tokens.lookup("d-old")
        assert record is not None and record.roles is None and not record.revoked
        assert await broker.tokens.owner("d-old") == "desk"
        assert await broker.tokens.migrate("desk", ("editor",), ("en",))
        assert not await broker.tokens.migrate("desk", ("chief",), None)  # once only
        record = await broker.tokens.lookup("d-old")
        assert record is not None and record.roles == ("editor",) and record.editions == ("en",)
        assert record.created == "2025-01-01T00:00:00.000Z"
        page = await broker.audit.query(AuditQuery(), datetime.now(UTC))
        assert [(e.action, e.subject) for e in page.entries] == [("token.migrated", "desk")]
    finally:
        if isinstance(broker, EmbeddedBroker):
            await broker.close()
