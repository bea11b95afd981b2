"""The benchmark figures the docs quote are those of bench/results/latest.json, the committed
results of the latest full run (`python -m bench`). Each quoted figure is followed by a
hidden mark, `<!-- bench: fanout.ratio -->`, naming its place in that file (list items by
index), and must equal the value there, rounded as the doc writes it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "bench" / "results" / "latest.json"
DOCS = [ROOT / "docs" / "performance.md", ROOT / "docs" / "operations.md"]

# A figure (digits, thousands commas, decimals) right before its mark.
MARKED = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)<!-- bench: (\S+) -->")
ANY_MARK = re.compile(r"<!-- bench:")

# Figures the docs must keep quoting: deleting one, or its mark, fails.
REQUIRED = {
    "fanout.ratio",
    "fanout.hub.us_per_delivery",
    "fanout.floor.us_per_delivery",
    "memory.hub.kb_per_connection",
    "memory.floor.kb_per_connection",
    "bursts.0.seconds_until_all",
    "bursts.1.seconds_until_all",
    "storm.per_second",
    "storm.hub_cpu_us_per_handshake",
    "publisher.sweep.0.posts_per_second",
    "summary.keepalive_adjusted.idle_us_per_connection_per_second",
}


def lookup(results: Any, path: str) -> Any:
    value = results
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def figure_problems(doc: str, results: dict[str, Any]) -> list[str]:
    """Each marked figure that differs from the results, or names nothing in them."""
    problems = []
    if len(MARKED.findall(doc)) != len(ANY_MARK.findall(doc)):
        problems.append("a bench mark does not follow a figure directly")
    for written, path in MARKED.findall(doc):
        try:
            value = lookup(results, path)
        except (KeyError, IndexError, ValueError, TypeError):
            problems.append(f"{path}: not in the results")
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{path}: {value!r} is not a number")
            continue
        decimals = len(written.partition(".")[2])
        shown = float(written.replace(",", ""))
        # Equal to the value rounded to as many decimals as the doc shows (either way at .5).
        if not math.isclose(shown, value, abs_tol=0.5 * 10**-decimals + 1e-9):
            problems.append(f"{path}: the doc says {written}, the results say {value}")
    return problems


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return json.loads(LATEST.read_text())


def test_the_results_are_a_full_run(results):
    assert results["command"] == "python -m bench"
    assert results["options"]["clients"] == 10_000 and results["options"]["smoke"] is False
    assert results["summary"]["correct"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", results["measured_at"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_quoted_figure_is_the_latest_runs(doc: Path, results):
    text = doc.read_text()
    assert MARKED.search(text), f"{doc.name} quotes no benchmark figure"
    assert figure_problems(text, results) == []


def test_the_key_figures_are_quoted(results):
    quoted = {path for doc in DOCS for _, path in MARKED.findall(doc.read_text())}
    assert quoted >= REQUIRED, REQUIRED - quoted


def test_the_date_of_the_run_is_in_the_doc(results):
    assert results["measured_at"][:10] in (ROOT / "docs" / "performance.md").read_text()


def test_the_check_catches_a_drifted_figure(results):
    ratio = results["fanout"]["ratio"]
    mark = "<!-- bench: fanout.ratio -->"
    assert figure_problems(f"x floor {ratio}{mark}", results) == []
    assert figure_problems(f"x floor {ratio + 0.01:.3f}{mark}", results) == [
        f"fanout.ratio: the doc says {ratio + 0.01:.3f}, the results say {ratio}"
    ]
    assert figure_problems("10,000<!-- bench: storm.connected -->", results) == []
    assert figure_problems("9,999<!-- bench: storm.connected -->", results) != []
    assert figure_problems("1<!-- bench: no.such.figure -->", results) == [
        "no.such.figure: not in the results"
    ]
    assert figure_problems("about <!-- bench: fanout.ratio -->", results) == [
        "a bench mark does not follow a figure directly"
    ]
