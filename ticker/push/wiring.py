"""Starting the delivery worker inside the publisher, as the expiry sweeper is started."""

from __future__ import annotations

import asyncio

from ..brokers.base import Broker
from ..config import Settings
from .rules import parse_networks
from .sender import Resolver, Sender, Signer
from .store import PushStore
from .worker import PushWorker, WorkerOptions


def make_worker(
    settings: Settings, broker: Broker, store: PushStore, **options: object
) -> PushWorker:
    allowed = parse_networks(settings.push_allow_networks)

    async def sender() -> Sender | None:
        """None until keys exist: the worker asks again a little later, so keys made with
        `ticker push keys create` on a running service take effect without a restart."""
        keys = await store.keys()
        if keys is None:
            return None
        return Sender(
            Signer(keys, settings.push_contact),
            Resolver(allowed),
            concurrency=settings.push_concurrency,
        )

    return PushWorker(
        broker,
        store,
        sender,
        settings.vocabulary.editions,
        WorkerOptions(
            ttl=settings.push_ttl,
            concurrency=settings.push_concurrency,
            **options,  # type: ignore[arg-type]
        ),
    )


def start_push_worker(settings: Settings, broker: Broker, store: PushStore) -> asyncio.Task:
    return asyncio.create_task(make_worker(settings, broker, store).run(), name="push-worker")
