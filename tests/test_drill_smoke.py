"""The fault drill still runs, in smoke mode (50 readers, 2 s freezes), every scenario, and
every column that must be 0 is 0: no acknowledged post lost, no reader gap or duplicate, no
500. docs/reliability.md quotes the full run's table, bench/results/drill.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "drill.json"
DOC = ROOT / "docs" / "reliability.md"
SCENARIOS = [
    "redis-kill",
    "redis-freeze",
    "redis-empty",
    "hub-kill",
    "hub-term",
    "publisher-kill",
    "redis-link-freeze",
    "reader-link-freeze",
]
MUST_BE_ZERO = ("lost", "gaps", "duplicates", "errors_500")


@pytest.mark.timeout(300)
def test_smoke_drill_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.drill", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["ok"] is True
    assert results["appendfsync"] == "always"
    rows = {row["scenario"]: row for row in results["rows"]}
    assert list(rows) == SCENARIOS
    for name, row in rows.items():
        assert row["readers"] == 50, name
        assert row["acknowledged"] == row["posts"] > 0, name
        for column in MUST_BE_ZERO:
            assert row[column] == 0, (name, column, row)
        assert row["failures"] == [], name
        assert row["readers_open_at_end"] == 50, name
    assert rows["redis-empty"]["readers_reset"] == 50
    assert rows["hub-kill"]["readers_reconnected"] == rows["hub-kill"]["readers_on_killed_hub"] > 0
    term = rows["hub-term"]
    assert term["readers_closed_1001"] == term["readers_on_stopped_hub"] > 0
    assert term["hub_exit_seconds"] <= 5
    assert rows["publisher-kill"]["posts_in_flight_at_kill"] > 0

    # The printed table says the same: each must-be-0 column is 0 in every row.
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    body = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]
    assert [row[0] for row in body] == SCENARIOS
    for title in ("acked lost", "gaps", "duplicates", "500s"):
        column = header.index(title)
        assert {row[column] for row in body} == {"0"}, title
    assert {row[header.index("ok")] for row in body} == {"yes"}
    # A run that went well leaves no logs behind.
    assert not list(tmp_path.glob("ticker-drill-*"))


def test_the_readers_checks_can_fail() -> None:
    """A gap, a duplicate, a snapshot that does not say reset, and a post missing from a
    view are each counted; a reset snapshot after the post's acknowledgement announces it."""
    import asyncio

    from bench.drillclients import Reader, Target, Worker
    from bench.wire import bench_headline

    def event(offset: int, seq: int, epoch: str = "e1") -> bytes:
        item = {"id": f"en-{seq}", "headline": bench_headline(seq, 0.0, "x")}
        return json.dumps(
            {"type": "event", "cursor": f"{epoch}:{offset}", "kind": "posted", "item": item}
        ).encode()

    def snapshot(offset: int, seqs: list[int], reset: bool, epoch: str = "e1") -> bytes:
        items = [{"id": f"en-{s}", "headline": bench_headline(s, 0.0, "x")} for s in seqs]
        return json.dumps(
            {"type": "snapshot", "cursor": f"{epoch}:{offset}", "reset": reset, "items": items}
        ).encode()

    class Conn:
        greeted = False

    async def check() -> None:
        worker = Worker()
        target = worker.targets["t"] = Target("t", [("h", 1)], (0.1, 1.0))
        readers = [Reader(i, hub=0) for i in range(4)]
        target.readers = readers
        for reader in readers:
            target.on_text(reader, snapshot(0, [], reset=False), Conn())  # type: ignore[arg-type]
        frames = {
            0: [event(1, 1), event(2, 2), event(3, 3)],  # all well
            1: [event(1, 1), event(3, 3)],  # a gap: 2 missing
            2: [event(1, 1), event(2, 2), event(2, 2), event(3, 3)],  # 2 twice
            3: [event(1, 1), snapshot(9, [3], reset=True, epoch="e2")],  # 2 gone, announced
        }
        for i, payloads in frames.items():
            for payload in payloads:
                target.on_text(readers[i], payload, Conn())  # type: ignore[arg-type]
        acked = {"1": 0.0, "2": 0.0, "3": 0.0}
        report = await worker.do_report("t", acked)
        assert report["gaps"] == 1 and report["duplicates"] == 1
        assert report["lost"] == {"2": 1}
        assert report["duplicated"] == {"2": 1}
        assert report["announced"] == {"2": 1}
        assert report["readers_reset"] == 1
        assert (await worker.do_wait("t", acked, 0))["pending"] == 1
        silent = Reader(9, hub=0, epoch="e1", offset=3)
        target.readers = [silent]
        target.on_text(silent, snapshot(5, [], reset=False), Conn())  # type: ignore[arg-type]
        assert silent.gaps == 1

    asyncio.run(check())


def test_reliability_doc_quotes_the_committed_full_run() -> None:
    """docs/reliability.md quotes bench/results/drill.json, the committed full run of
    `python -m bench.drill`: its table row for row, its date and command, and every figure
    marked `<!-- drill: SCENARIO FIELD -->`."""
    from bench.drill import table

    results = json.loads(RESULTS.read_text())
    options = results["options"]
    assert (options["readers"], options["smoke"]) == (1000, False)
    assert results["command"] == "python -m bench.drill"
    assert results["appendfsync"] == "always"
    assert [row["scenario"] for row in results["rows"]] == SCENARIOS
    doc = DOC.read_text()
    assert table(results["rows"]) in doc
    assert f"`{results['command']}`, {results['date']}" in doc
    rows = {row["scenario"]: row for row in results["rows"]}
    marked = re.findall(r"([0-9][0-9.]*) s<!-- drill: (\S+) (\S+) -->", doc)
    assert len(marked) == len(SCENARIOS)
    for figure, name, key in marked:
        assert float(figure) == rows[name][key], (name, key)
