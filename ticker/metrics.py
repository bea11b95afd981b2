"""Hub metrics in the Prometheus text format, with no dependency and no I/O.

Everything is counted per event or per group, never per connection per message, so
measuring the hot path does not slow it down.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


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
    lag_seconds: float = 0.0
    fanout: Histogram = field(default_factory=Histogram)
    offsets: dict[str, int] = field(default_factory=dict)


_HELP = {
    "connections": ("gauge", "Open WebSocket connections."),
    "connections_total": ("counter", "WebSocket connections accepted."),
    "events": ("counter", "Events received from the broker and applied."),
    "deliveries": ("counter", "Frames written to connections (one per connection per frame)."),
    "frames": ("counter", "Distinct frames built; each is written to a whole group."),
    "slow_consumers": ("counter", "Connections closed because they read too slowly."),
    "keepalive_timeouts": ("counter", "Connections closed for not answering a ping."),
    "protocol_errors": ("counter", "Connections closed for breaking the protocol."),
    "resets": ("counter", "Times an edition was reloaded and its clients sent a reset."),
    "lag_seconds": ("gauge", "Age of the latest event when the hub applied it."),
}


def render(metrics: HubMetrics, labels: str = "") -> str:
    """The metrics as Prometheus text; `labels` (e.g. `worker="1"`) go on every sample."""
    inner = labels
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        metric = f"ticker_hub_{name}" + (
            "_total" if kind == "counter" and not name.endswith("_total") else ""
        )
        lines += [
            f"# HELP {metric} {text}",
            f"# TYPE {metric} {kind}",
            f"{metric}{_braces(inner)} {getattr(metrics, name)}",
        ]
    lines += [
        "# HELP ticker_hub_fanout_seconds Time to write one batch of frames to every "
        "connection that wants it.",
        "# TYPE ticker_hub_fanout_seconds histogram",
    ]
    cumulative = 0
    for bound, count in zip(
        (*metrics.fanout.buckets, float("inf")), metrics.fanout.counts, strict=True
    ):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        bucket_labels = _braces(inner, 'le="' + le + '"')
        lines.append(f"ticker_hub_fanout_seconds_bucket{bucket_labels} {cumulative}")
    lines.append(f"ticker_hub_fanout_seconds_sum{_braces(inner)} {metrics.fanout.total}")
    lines.append(f"ticker_hub_fanout_seconds_count{_braces(inner)} {metrics.fanout.count}")
    lines += [
        "# HELP ticker_hub_edition_offset The latest offset applied, per edition.",
        "# TYPE ticker_hub_edition_offset gauge",
    ]
    for edition, offset in sorted(metrics.offsets.items()):
        edition_labels = _braces(inner, 'edition="' + edition + '"')
        lines.append(f"ticker_hub_edition_offset{edition_labels} {offset}")
    return "\n".join(lines) + "\n"


def _braces(*parts: str) -> str:
    joined = ",".join(p for p in parts if p)
    return f"{{{joined}}}" if joined else ""
