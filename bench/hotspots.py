"""Summarize a py-spy raw profile: `python -m bench.hotspots PROFILE [--top N] [--grep S]`.

py-spy's raw format is one collapsed stack per line with a sample count. A flame graph
needs a browser; this prints the two lists that answer "where does the hub's CPU go":
functions by own time (self) and by time including callees (total), as shares of all
samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((?P<file>[^)]*?)(?::\d+)?\)$")
# Where a file path stops being about this machine: installed packages, the standard
# library of any Python 3, and this checkout (wherever it lies).
_PREFIXES = re.compile(
    r"^.*(?:site-packages/|dist-packages/|lib/python3\.\d+/|"
    + re.escape(str(Path(__file__).resolve().parent.parent) + "/")
    + ")"
)


def _short(frame: str) -> str:
    """`send (websockets/asyncio/connection.py:123)` -> `send (asyncio/connection.py)`."""
    match = _LOCATION.search(frame)
    if not match:
        return frame
    path = _PREFIXES.sub("", match["file"], count=1)
    return f"{frame[: match.start()]} ({path})"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_short(f) for f in stack.split(";")], int(count)))
    return stacks


def hotspots(
    stacks: list[tuple[list[str], int]], grep: str | None
) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for frames, count in stacks:
        if grep and not any(grep in f for f in frames):
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return samples, own, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", help="only stacks through a frame containing this")
    args = parser.parse_args()
    samples, own, total = hotspots(load(args.profile), args.grep)
    print(f"{samples} samples")
    for title, counter in (("self", own), ("total", total)):
        print(f"\n-- by {title} time")
        for frame, count in counter.most_common(args.top):
            print(f"{count / max(samples, 1):6.1%}  {frame}")


if __name__ == "__main__":
    main()
