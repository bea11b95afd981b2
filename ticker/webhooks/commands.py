"""`ticker webhooks ...`: the same operations as the API, from the shell, on the store
directly (as `ticker token` does), so they work before any publisher runs. Each one is
recorded through `record_audit`, with the shell user as the actor."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from .. import audit
from ..brokers.base import Broker
from ..config import Settings
from ..items import now_iso
from . import rules
from .api import start_queueing
from .audit import record_audit
from .rules import RegistrationError, Webhook
from .store import webhook_store
from .worker import send_test, worker_settings


def _operator() -> audit.Request:
    """Commands on the store's machine are recorded as the shell user who ran them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return audit.Request(actor=f"shell:{user}", role=audit.OPERATOR)


async def _found(broker: Broker, webhook_id: str) -> Webhook:
    hook = await webhook_store(broker).get(webhook_id) if rules.is_id(webhook_id) else None
    if hook is None:
        raise SystemExit(f"ticker: no webhook {webhook_id!r}")
    return hook


async def create(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    payload = {
        "url": args.url,
        "format": args.format,
        "description": args.description or "",
        "filters": {
            "edition": args.edition,
            "urgency": args.urgency,
            "regions": args.regions or [],
            "categories": args.categories or [],
        },
    }
    allow = worker_settings(settings).allow
    try:
        registration = rules.parse_registration(payload, settings.vocabulary, allow)
    except RegistrationError as exc:
        raise SystemExit(f"ticker: {exc}") from None
    by = _operator()
    hook = Webhook(
        id=rules.new_id(),
        url=registration.url,
        filters=registration.filters,
        format=registration.format,
        secret=rules.new_secret(),
        created=now_iso(),
        created_by=by.actor,
        description=registration.description,
    )
    store = webhook_store(broker)
    await store.create(hook)
    await start_queueing(store, broker, hook)
    await record_audit(broker, by, "webhook.created", hook.id, {"url": [None, hook.url]})
    print(f"{hook.id}\t{hook.secret}")
    print("# the secret is shown once: receivers verify signatures with it", file=sys.stderr)


async def listing(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    store = webhook_store(broker)
    for hook in await store.all():
        state = "enabled" if hook.disabled is None else f"disabled: {hook.disabled_reason}"
        queued = await store.depth(hook.id)
        f = hook.filters
        print(f"{hook.id}\t{hook.url}\t{f.edition}\t{hook.format}\tqueued {queued}\t{state}")


async def delete(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    hook = await _found(broker, args.id)
    await webhook_store(broker).delete(hook.id)
    await record_audit(broker, _operator(), "webhook.deleted", hook.id, {"url": [hook.url, None]})
    print(f"deleted {hook.id}")


async def enable(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    hook = await _found(broker, args.id)
    await webhook_store(broker).enable(hook.id)
    await record_audit(
        broker, _operator(), "webhook.enabled", hook.id, {"disabled": [hook.disabled_reason, None]}
    )
    print(f"enabled {hook.id}")


async def test(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    hook = await _found(broker, args.id)
    attempt = await send_test(webhook_store(broker), hook, worker_settings(settings))
    await record_audit(
        broker, _operator(), "webhook.tested", hook.id, {"outcome": [None, attempt.outcome]}
    )
    print(json.dumps(attempt.to_dict()))
    if attempt.outcome != "delivered":
        raise SystemExit(1)


async def deliveries(settings: Settings, broker: Broker, args: argparse.Namespace) -> None:
    hook = await _found(broker, args.id)
    for a in await webhook_store(broker).deliveries(hook.id):
        status = a.status if a.status is not None else "-"
        print(f"{a.at}\t{a.msg_id}\t{a.outcome}\t{status}\t{a.duration_ms} ms\t{a.error or ''}")
