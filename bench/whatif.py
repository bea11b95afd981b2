"""The hub with experimental patches, to measure what a change would buy before making it.

`python -m bench --hub-whatif backlog,nokeepalive,leanwrite` runs the hub through this
module instead of `ticker hub`. Each patch is a few lines applied at import time; none of
them is production code (slow-consumer detection, for one, is left out of `leanwrite`).
docs/performance.md reports what each one changed.

- backlog: listen with a 4096-entry accept queue instead of asyncio's default of 100.
- nokeepalive: no per-connection ping task (websockets' ping_interval=None).
- leanwrite: the fan-out loop writes to a cached list of transports, with no per-member
  state check or buffer-size call.

With BENCH_TRACEMALLOC=DIR, each SIGUSR1 writes the allocations grown since the previous
one to DIR, by source line: the memory cost of whatever happened in between.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

from ticker import cli, hub

PATCHES = frozenset({"backlog", "nokeepalive", "leanwrite"})


def _patch_serve(backlog: bool, keepalive_off: bool) -> None:
    original = hub.serve

    def serve(*args: Any, **kwargs: Any) -> Any:
        if backlog:
            kwargs["backlog"] = 4096
        if keepalive_off:
            kwargs["ping_interval"] = None
        return original(*args, **kwargs)

    hub.serve = serve  # type: ignore[assignment]


def _patch_write() -> None:
    """Group members' transports in a list per group, kept in step by join and leave."""
    transports: dict[int, dict[Any, Any]] = {}
    join, leave = hub.Hub._join, hub.Hub._leave

    def _join(self: hub.Hub, ws: Any, subscription: Any, since: Any) -> hub.Group:
        group = join(self, ws, subscription, since)
        transports.setdefault(id(group), {})[ws] = ws.transport
        return group

    def _leave(self: hub.Hub, ws: Any) -> None:
        group = getattr(ws, "ticker_group", None)
        if group is not None:
            transports.get(id(group), {}).pop(ws, None)
        leave(self, ws)

    def _write(self: hub.Hub, group: hub.Group, frame: bytes) -> None:
        members = transports.get(id(group), {})
        for transport in members.values():
            transport.write(frame)
        self.stats["deliveries"] += len(members)
        self.stats["frames"] += 1

    hub.Hub._join, hub.Hub._leave, hub.Hub._write = _join, _leave, _write  # type: ignore[method-assign]


def _install_tracemalloc(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(1)
    state: dict[str, Any] = {"last": tracemalloc.take_snapshot(), "n": 0}

    def dump(signum: int, frame: object) -> None:
        snapshot = tracemalloc.take_snapshot()
        state["n"] += 1
        stats = snapshot.compare_to(state["last"], "lineno")
        lines = [f"{s.size_diff:>12} B {s.count_diff:>9} blocks  {s.traceback}" for s in stats]
        (folder / f"tracemalloc-{state['n']}.txt").write_text("\n".join(lines[:60]) + "\n")
        state["last"] = snapshot

    signal.signal(signal.SIGUSR1, dump)


def main() -> None:
    wanted = {p for p in os.environ.get("BENCH_WHATIF", "").split(",") if p}
    unknown = wanted - PATCHES
    if unknown:
        raise SystemExit(f"bench.whatif: unknown patches {sorted(unknown)}; know {sorted(PATCHES)}")
    if {"backlog", "nokeepalive"} & wanted:
        _patch_serve("backlog" in wanted, "nokeepalive" in wanted)
    if "leanwrite" in wanted:
        _patch_write()
    if os.environ.get("BENCH_TRACEMALLOC"):
        _install_tracemalloc(Path(os.environ["BENCH_TRACEMALLOC"]))
    cli.main()


if __name__ == "__main__":
    main()
