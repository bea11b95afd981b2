"""Brokers: where items and their history live, and how changes reach every hub."""

from __future__ import annotations

from ..config import Settings
from .base import Broker


def make_broker(settings: Settings) -> Broker:
    """Redis when a URL is configured, otherwise the embedded SQLite broker."""
    editions = settings.vocabulary.editions
    limits = settings.limits
    if settings.redis_url:
        from .redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            editions=editions,
            history=limits.history,
            idempotency_seconds=limits.idempotency_seconds,
        )
    from .embedded import EmbeddedBroker

    return EmbeddedBroker(
        settings.db_path,
        editions=editions,
        history=limits.history,
        idempotency_seconds=limits.idempotency_seconds,
    )
