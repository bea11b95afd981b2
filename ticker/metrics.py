"""Hub metrics: plain integers on the hot path, exported in the Prometheus text format
through a prometheus_client collector, with no I/O.

Everything is counted per event or per group, never per connection per message, so
measuring the hot path does not slow it down.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# The folder where prometheus_client's multiprocess mode keeps every process's counts
# (`ticker publisher --workers N`, and each publisher's Web Push delivery process).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...] = FANOUT_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(FANOUT_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


@dataclass(slots=True)
class HubMetrics:
    connections: int = 0
    connections_total: int = 0
    events: int = 0
    deliveries: int = 0
    frames: int = 0
    slow_consumers: int = 0
    keepalive_timeouts: int = 0
    protocol_errors: int = 0
    resets: int = 0
    refused: int = 0
    lag_seconds: float = 0.0
    fanout: Histogram = field(default_factory=Histogram)
    offsets: dict[str, int] = field(default_factory=dict)


# attribute -> (exported name, type, help). Counters are named without `_total`, which the
# exposition adds; the gauge of open connections is not `ticker_hub_connections`, which
# would clash with the counter's family.
_EXPORTED = {
    "connections": ("ticker_hub_open_connections", "gauge", "Open WebSocket and SSE connections."),
    "connections_total": ("ticker_hub_connections", "counter", "Connections accepted."),
    "events": ("ticker_hub_events", "counter", "Events received from the broker and applied."),
    "deliveries": (
        "ticker_hub_deliveries",
        "counter",
        "Frames written to connections (one per connection per frame).",
    ),
    "frames": (
        "ticker_hub_frames",
        "counter",
        "Distinct frames built, each written to a group.",
    ),
    "slow_consumers": (
        "ticker_hub_slow_consumers",
        "counter",
        "Connections closed because they read too slowly.",
    ),
    "keepalive_timeouts": (
        "ticker_hub_keepalive_timeouts",
        "counter",
        "Connections closed for not answering a ping.",
    ),
    "protocol_errors": (
        "ticker_hub_protocol_errors",
        "counter",
        "Connections closed for breaking the protocol.",
    ),
    "resets": (
        "ticker_hub_resets",
        "counter",
        "Times an edition was reloaded and its clients sent a reset.",
    ),
    "refused": (
        "ticker_hub_refused",
        "counter",
        "Handshakes refused with 429 by the per-address limits.",
    ),
    "lag_seconds": ("ticker_hub_lag_seconds", "gauge", "Age of the latest event when applied."),
}


class HubCollector(Collector):
    """The plain counters of one hub as prometheus_client metric families, read at scrape
    time: the hot path only ever adds to integers."""

    def __init__(self, metrics: HubMetrics, worker: int | None = None) -> None:
        self.metrics = metrics
        self.labels = {"worker": str(worker)} if worker is not None else {}

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        names, values = list(self.labels), list(self.labels.values())
        for attribute, (name, kind, text) in _EXPORTED.items():
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, text, labels=names
            )
            family.add_metric(values, getattr(m, attribute))
            yield family
        histogram = HistogramMetricFamily(
            "ticker_hub_fanout_seconds",
            "Time to write one batch of frames to every connection that wants it.",
            labels=names,
        )
        cumulative, buckets = 0, []
        for bound, count in zip((*m.fanout.buckets, math.inf), m.fanout.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        histogram.add_metric(values, buckets, m.fanout.total)
        yield histogram
        offsets = GaugeMetricFamily(
            "ticker_hub_edition_offset",
            "The latest offset applied, per edition.",
            labels=[*names, "edition"],
        )
        for edition, offset in sorted(m.offsets.items()):
            offsets.add_metric([*values, edition], offset)
        yield offsets


def render(metrics: HubMetrics, worker: int | None = None) -> str:
    """The metrics as Prometheus text; with `worker`, every sample is labelled with it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(metrics, worker))
    return generate_latest(registry).decode()
