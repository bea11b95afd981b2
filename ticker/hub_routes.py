"""The hub's plain HTTP answers: liveness, readiness and metrics, with no I/O.

Everything else on the hub's port is a reader's connection; these let a load balancer and
Prometheus look at the hub without opening one.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from .metrics import HubMetrics, render

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class PlainAnswer:
    status: HTTPStatus
    body: str
    content_type: str = PLAIN_TEXT


def answer(
    path: str, *, ready: bool, metrics: HubMetrics, worker: int | None = None
) -> PlainAnswer:
    """The answer to a plain GET on the hub's port."""
    if path == "/healthz":
        return PlainAnswer(HTTPStatus.OK, "ok\n")
    if path == "/readyz":
        if ready:
            return PlainAnswer(HTTPStatus.OK, "ready\n")
        return PlainAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "loading\n")
    if path == "/metrics":
        return PlainAnswer(HTTPStatus.OK, render(metrics, worker), PROMETHEUS_TEXT)
    return PlainAnswer(HTTPStatus.NOT_FOUND, "the ticker hub serves /ws and /sse\n")
