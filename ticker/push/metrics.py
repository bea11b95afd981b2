"""Web Push counters, exported with the publisher's metrics (the worker runs there)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("ticker_push_sent", "Push messages the push services accepted, by kind.", ["kind"])
FAILED = Counter(
    "ticker_push_failed",
    "Push messages given up on, by reason (retries spent, refused by the push service, "
    "endpoint not allowed).",
    ["reason"],
)
REMOVED = Counter(
    "ticker_push_removed", "Subscriptions removed because the push service said 404 or 410."
)
RETRIED = Counter("ticker_push_retried", "Push messages sent again after a 429, 5xx or error.")
QUEUE = Gauge(
    "ticker_push_queue_depth",
    "Push messages of the event being delivered that are not sent yet.",
    multiprocess_mode="livesum",
)
DELAY = Histogram(
    "ticker_push_delay_seconds",
    "Time from an item's change (its `updated` time) to the push service's acceptance.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
