"""The fault drill still runs, in smoke mode (50 readers, 2 s freezes), every scenario, and
every column that must be 0 is 0: no acknowledged post lost, no reader gap or duplicate, no
500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [
    "redis-kill",
    "redis-freeze",
    "redis-empty",
    "hub-kill",
    "hub-term",
    "publisher-kill",
    "link-freeze",
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
