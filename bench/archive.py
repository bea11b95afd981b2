"""The archive benchmark: `python -m bench.archive` on its own, and the last phase of
`python -m bench`.

For each store (the embedded SQLite file and a private redis-server) it loads N items
straight through the broker's publish (posted; then one in ten withdrawn, and the rest
expired but the newest ten, as the cap of live items leaves a day's ticker), starts a
publisher on that store, and times archive queries over HTTP, one kind
at a time on one kept-alive connection: the newest page, a common word, a rare word, one
editor, a one-day window, and the second page of the common word through its cursor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ticker.brokers.base import Broker, Change
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker
from ticker.items import Item, expire, now_iso, withdraw

from .http import HttpConnection
from .procs import Managed, create_token, free_port, http_ok, start_redis, ticker_command, wait_for

EDITION = "en"
EDITORS = 20
COMMON = "police"  # in every other headline
FILLER_WORDS = 3000
SPACING = timedelta(minutes=1)  # between two items' creation: 100,000 items span 69 days
KINDS = ("latest", "q_common", "q_rare", "editor", "range", "page2")
LOAD_CONCURRENCY = 32
_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "de", "pa")
_FILLER = [
    "".join(_SYLLABLES[n // 10**digit % 10] for digit in range(4)) for n in range(FILLER_WORDS)
]


def headline(n: int, items: int, rng: random.Random) -> str:
    """About eight words: the common one in every other item, a rare one shared by ten
    items, and filler words drawn with a long tail, as real headlines are."""
    filler = [_FILLER[min(int(rng.paretovariate(1.1)) - 1, FILLER_WORDS - 1)] for _ in range(6)]
    common = [COMMON] if n % 2 == 0 else []
    return " ".join([*common, *filler, rare_word(n % max(items // 10, 1))]).capitalize()


def rare_word(k: int) -> str:
    return f"zq{k:05d}"


def make_item(n: int, items: int, start: datetime, rng: random.Random) -> Item:
    stamp = now_iso(start + n * SPACING)
    return Item(
        id=f"{EDITION}-{secrets.token_urlsafe(9)}",
        edition=EDITION,
        headline=headline(n, items, rng),
        source=None,
        link=None,
        urgency=3,
        regions=(),
        categories=(),
        created=stamp,
        updated=stamp,
        version=1,
        status="live",
        expires=None,
        editor=f"editor{n % EDITORS:02d}",
    )


LIVE_LEFT = 10  # live after the load: within the default cap of 20


async def load(broker: Broker, items: int, start: datetime) -> dict[str, Any]:
    """Every item posted, then left as a day's ticker leaves it: every tenth withdrawn,
    and every other one expired (retired past the cap of live items) but the newest few,
    so the publisher started afterwards has nothing to retire while it is measured."""
    rng = random.Random(7)
    began = time.perf_counter()
    changes = 0

    async def one(n: int) -> int:
        item = make_item(n, items, start, rng)
        await broker.publish(Change("posted", item))
        if n % 10 == 0:
            await broker.publish(Change("withdrawn", withdraw(item, editor="chief"), 1))
            return 2
        if n < items - LIVE_LEFT:
            await broker.publish(Change("expired", expire(item), expected_version=1))
            return 2
        return 1

    for first in range(0, items, LOAD_CONCURRENCY):
        done = await asyncio.gather(
            *(one(n) for n in range(first, min(first + LOAD_CONCURRENCY, items)))
        )
        changes += sum(done)
    seconds = time.perf_counter() - began
    return {
        "items": items,
        "changes": changes,
        "seconds": round(seconds, 2),
        "changes_per_second": round(changes / seconds, 1),
    }


def queries(kind: str, count: int, items: int, start: datetime) -> list[dict[str, str]]:
    """`count` queries of one kind, each a little different (another word, editor or day)."""
    rng = random.Random(kind)
    span = items * SPACING
    out = []
    for _ in range(count):
        asked = {"edition": EDITION, "status": "all", "limit": "50"}
        if kind in ("q_common", "page2"):
            asked["q"] = COMMON
        elif kind == "q_rare":
            asked["q"] = rare_word(rng.randrange(max(items // 10, 1)))
        elif kind == "editor":
            asked["editor"] = f"editor{rng.randrange(EDITORS):02d}"
        elif kind == "range":
            since = start + span * rng.random()
            asked["from"] = now_iso(since)
            asked["to"] = now_iso(since + timedelta(days=1))
        out.append(asked)
    return out


async def time_queries(
    port: int, token: str, items: int, start: datetime, count: int
) -> dict[str, Any]:
    conn = await HttpConnection("127.0.0.1", port).open()
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {}
    failed = 0
    try:
        for asked in queries("latest", 5, items, start):  # connections, caches
            await conn.request("GET", "/api/items?" + urlencode(asked), b"", headers)
        for kind in KINDS:
            took: list[float] = []
            found = 0
            for asked in queries(kind, count, items, start):
                if kind == "page2":
                    status, body = await conn.request(
                        "GET", "/api/items?" + urlencode(asked), b"", headers
                    )
                    after = json.loads(body)["next"] if status == 200 else None
                    if after is None:
                        failed += 1
                        continue
                    asked = {**asked, "cursor": after}
                began = time.perf_counter()
                status, body = await conn.request(
                    "GET", "/api/items?" + urlencode(asked), b"", headers
                )
                took.append((time.perf_counter() - began) * 1000)
                if status != 200:
                    failed += 1
                    continue
                found += len(json.loads(body)["items"])
            took.sort()
            out[kind] = {
                "queries": len(took),
                "p50_ms": round(_quantile(took, 0.5), 2),
                "p99_ms": round(_quantile(took, 0.99), 2),
                "items_per_answer": round(found / max(len(took), 1), 1),
            }
    finally:
        await conn.close()
    out["failed"] = failed
    out["worst_p99_ms"] = max(out[kind]["p99_ms"] for kind in KINDS)
    return out


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(logdir: Path, items: int, count: int) -> dict[str, Any]:
    """Both stores in turn, each loaded with `items` items, `count` queries per kind."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    results: dict[str, Any] = {"items": items, "queries_per_kind": count}
    env = {"TICKER_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    for store in ("embedded", "redis"):
        managed: list[Managed] = []
        try:
            if store == "embedded":
                db = logdir / "archive.db"
                broker: Broker = EmbeddedBroker(db, editions=(EDITION,))
                flags = ["--db", str(db)]
            else:
                redis, url = start_redis(logdir, name="archive-redis")
                managed.append(redis)
                broker = RedisBroker(url, editions=(EDITION,))
                flags = ["--redis-url", url]
            await broker.start()
            try:
                empty = await _stored_bytes(broker, store, logdir)
                loaded = await load(broker, items, start)
                size = await _stored_bytes(broker, store, logdir) - empty
            finally:
                await broker.close()
            token = create_token(flags, logdir)
            port = free_port()
            command = (
                ["serve", "--hub-host", "127.0.0.1", "--hub-port", str(free_port())]
                if store == "embedded"
                else ["publisher"]
            )
            server = Managed(
                f"archive-{store}",
                ticker_command(*command, *flags, "--host", "127.0.0.1", "--port", str(port)),
                logdir,
                env,
            )
            managed.append(server)
            wait_for(_healthy(port), server, f"the {store} publisher", 120)
            timed = await time_queries(port, token, items, start, count)
            results[store] = {
                "load": loaded,
                "bytes_per_item": round(size / max(items, 1)),
                **timed,
            }
        finally:
            for process in reversed(managed):
                process.stop()
    results["failed"] = sum(results[store]["failed"] for store in ("embedded", "redis"))
    results["worst_p99_ms"] = max(results[s]["worst_p99_ms"] for s in ("embedded", "redis"))
    return results


def _healthy(port: int) -> Callable[[], bool]:
    return lambda: http_ok(port, "/healthz")


async def _stored_bytes(broker: Broker, store: str, logdir: Path) -> int:
    """What the store holds: the SQLite file (with its WAL), or Redis's used memory. After
    the load it holds the live items (eight in ten) and the history too."""
    if store == "embedded":
        assert isinstance(broker, EmbeddedBroker)
        broker.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return _file_bytes(logdir)
    assert isinstance(broker, RedisBroker)
    return int((await broker._redis.info("memory"))["used_memory"])


def _file_bytes(logdir: Path) -> int:
    return sum(path.stat().st_size for path in logdir.glob("archive.db*") if path.is_file())


def render(r: dict[str, Any]) -> str:
    rows = [f"archive: {r['items']} items per store, {r['queries_per_kind']} queries per kind"]
    for store in ("embedded", "redis"):
        s = r[store]
        cells = ", ".join(f"{kind} {s[kind]['p50_ms']}/{s[kind]['p99_ms']}" for kind in KINDS)
        rows.append(
            f"  {store}: p50/p99 ms: {cells}; loaded {s['load']['changes_per_second']} "
            f"changes/s, {s['bytes_per_item']} bytes per item"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="per kind of query")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticker-bench-archive-") as tmp:
        results = asyncio.run(measure(Path(tmp), args.items, args.queries))
    print(render(results))
    if args.json_path:
        args.json_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TICKER_LOG_LEVEL", "warning")
    main()
