"""Web Push counters. They live in a registry of their own because they are counted in the
delivery process (ticker/push/process.py); the publisher exports them at /metrics as that
process last reported them (ticker/push/wiring.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()

SENT = Counter(
    "ticker_push_sent",
    "Push messages the push services accepted, by kind.",
    ["kind"],
    registry=REGISTRY,
)
FAILED = Counter(
    "ticker_push_failed",
    "Push messages given up on, by reason (retries spent, refused by the push service, "
    "endpoint not allowed).",
    ["reason"],
    registry=REGISTRY,
)
REMOVED = Counter(
    "ticker_push_removed",
    "Subscriptions removed because the push service said 404 or 410.",
    registry=REGISTRY,
)
RETRIED = Counter(
    "ticker_push_retried",
    "Push messages sent again after a 429, 5xx or error.",
    registry=REGISTRY,
)
QUEUE = Gauge(
    "ticker_push_queue_depth",
    "Push messages of the event being delivered that are not sent yet.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DELAY = Histogram(
    "ticker_push_delay_seconds",
    "Time from an item's change (its `updated` time) to the push service's acceptance.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)


def exposition() -> str:
    return generate_latest(REGISTRY).decode()
