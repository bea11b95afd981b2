"""Brokers: where items and their history live, and how changes reach every hub."""

from __future__ import annotations

from ..config import Settings
from .base import Broker


def make_broker(settings: Settings, *, exclusive: bool = False) -> Broker:
    """Redis when a URL is configured, otherwise the embedded SQLite broker.

    `exclusive` is for a serving process: the embedded broker then locks its file for its
    lifetime and refuses to start while another server holds it. Short commands (tokens)
    leave it off, so they work while a server runs. Redis ignores it: many publishers and
    hubs share one Redis by design."""
    editions = settings.vocabulary.editions
    limits = settings.limits
    if settings.redis_url:
        from .redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            editions=editions,
            history=limits.history,
            idempotency_seconds=limits.idempotency_seconds,
            audit_days=settings.audit_days,
        )
    from .embedded import EmbeddedBroker

    return EmbeddedBroker(
        settings.db_path,
        editions=editions,
        history=limits.history,
        idempotency_seconds=limits.idempotency_seconds,
        exclusive=exclusive,
        audit_days=settings.audit_days,
    )
