"""The publisher's metrics, in the Prometheus text format at GET /metrics.

Requests are labelled by route template (`/api/items/{item_id}`), never by raw path, so a
scan of made-up URLs cannot grow the number of series. With `--workers N` the supervisor
gives every worker one directory for prometheus_client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`): each worker writes its counts there, and whichever worker
answers a scrape adds up every worker's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .brokers.base import Broker, Change, Published
from .metrics import MULTIPROC_ENV

UNMATCHED = "unmatched"

REQUESTS = Counter(
    "ticker_publisher_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "ticker_publisher_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CHANGES = Counter(
    "ticker_publisher_changes",
    "Changes saved by editors, by edition and kind (posted, corrected, withdrawn).",
    ["edition", "kind"],
)
UNAVAILABLE = Counter(
    "ticker_publisher_unavailable",
    "Requests answered 503 because the store could not be reached.",
)
AUTH_FAILURES = Counter(
    "ticker_publisher_auth_failures",
    "Requests with a missing, unknown or revoked editor token.",
)
RATE_LIMITED = Counter(
    "ticker_publisher_rate_limited",
    "Requests refused with 429, by limit (posts, auth_failures).",
    ["limit"],
)
TOO_LARGE = Counter(
    "ticker_publisher_too_large",
    "Requests refused with 413 because the body passed its limit.",
)
WORKERS = Gauge(
    "ticker_publisher_workers",
    "Publisher processes whose counts this scrape adds up.",
    multiprocess_mode="livesum",
)
WORKERS.set(1)


def render() -> tuple[bytes, str]:
    """The metrics of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def endpoint(request: Request) -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)


class RequestMetrics:
    """Counts and times every answer by its route template; outside everything that can
    answer (the body limit, the error handlers), so every status is seen."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.template(scope)  # before routing, which rewrites parts of the scope
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            if status == 503:
                UNAVAILABLE.inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)

    def template(self, scope: Scope) -> str:
        """The path of the route that took the request (whatever its method), or
        `unmatched`."""
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return _path(route)
            if match is Match.PARTIAL and partial is None:
                partial = _path(route)
        return partial or UNMATCHED


def _path(route: BaseRoute) -> str:
    if isinstance(route, Mount):
        return route.path + "/{path}"
    return getattr(route, "path", UNMATCHED)


class CountingBroker:
    """The broker as the API sees it: every change an editor saves is counted, by edition
    and kind. (A replayed post saved nothing new and is not counted again.)"""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    async def publish(self, change: Change) -> Published:
        published = await self._broker.publish(change)
        if not published.replayed:
            CHANGES.labels(published.item.edition, change.kind).inc()
        return published
