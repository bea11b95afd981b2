"""The hub's per-address limits at the handshake: open connections, and handshakes per
second (a token bucket per address).

Both are off by default: behind a proxy that hides client addresses, every reader would
be one address. They cost nothing on the fan-out's hot path: a count goes up at an
admitted handshake and down when that connection is lost, and a bucket is touched once
per handshake.
"""

from __future__ import annotations

from collections import Counter


class Admission:
    def __init__(self, max_connections: int, per_second: float, burst: int) -> None:
        self.max_connections = max_connections  # 0: no cap
        self.per_second = per_second  # 0: no pacing
        self.burst = float(max(burst, 1))
        self.enabled = max_connections > 0 or per_second > 0
        self.open: Counter[str] = Counter()
        self.buckets: dict[str, list[float]] = {}  # address -> [tokens, loop time]

    def admit(self, address: str, now: float) -> str | None:
        """None if a handshake from `address` may go on (it is counted as open until
        `release`), or the reason it may not."""
        if self.max_connections and self.open[address] >= self.max_connections:
            return f"too many connections from {address}; close one and try again"
        if self.per_second:
            bucket = self.buckets.get(address)
            if bucket is None:
                bucket = self.buckets[address] = [self.burst, now]
            else:
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.per_second)
                bucket[1] = now
            if bucket[0] < 1:
                return f"too many handshakes from {address}; slow down"
            bucket[0] -= 1
        if self.max_connections:
            self.open[address] += 1
        return None

    def release(self, address: str) -> None:
        if self.max_connections:
            left = self.open[address] - 1
            if left > 0:
                self.open[address] = left
            else:
                del self.open[address]

    def prune(self, now: float) -> None:
        """Forget buckets that have filled up again: they are as good as new."""
        if not self.per_second:
            return
        full = self.burst / self.per_second
        for address in [a for a, (_, at) in self.buckets.items() if now - at >= full]:
            del self.buckets[address]
