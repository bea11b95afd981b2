"""The token stores: one behaviour on both stores, read through the broker's `tokens`."""

from __future__ import annotations

import pytest

from ticker.brokers.base import Broker, BrokerError


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
