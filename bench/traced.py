"""`ticker hub` with tracemalloc, to see what each connection costs in memory.

`python -m bench --tracemalloc DIR` runs the hub through this module. Each SIGUSR1 writes
the allocations grown since the previous one to DIR, by source line: the memory cost of
whatever happened in between (for example, 10,000 readers connecting).
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

from ticker import cli


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
    _install_tracemalloc(Path(os.environ["BENCH_TRACEMALLOC"]))
    cli.main()


if __name__ == "__main__":
    main()
