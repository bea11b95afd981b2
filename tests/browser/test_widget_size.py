"""The widget is embedded on every page of the site: JS and CSS stay under 10 KB gzipped."""

from __future__ import annotations

import gzip

from browserkit import ROOT

BUDGET = 10 * 1024


def test_widget_js_and_css_fit_in_10_kb_gzipped() -> None:
    sizes = {
        name: len(gzip.compress((ROOT / "web" / name).read_bytes(), compresslevel=9))
        for name in ("widget.js", "widget.css")
    }
    assert sum(sizes.values()) <= BUDGET, f"{sizes} is over {BUDGET} bytes gzipped"
