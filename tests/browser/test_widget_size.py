"""The widget is embedded on every page of the site: JS and CSS, as served, stay under
10 KB gzipped (the publisher serves them without comments; test_delivery.py checks the
bytes on the wire)."""

from __future__ import annotations

import gzip

from browserkit import ROOT

from ticker.static_assets import strip_comments

BUDGET = 10 * 1024


def test_widget_js_and_css_fit_in_10_kb_gzipped() -> None:
    sizes = {
        name: len(
            gzip.compress(
                strip_comments(
                    (ROOT / "web" / name).read_text("utf-8"), script=name.endswith(".js")
                ).encode(),
                compresslevel=9,
            )
        )
        for name in ("widget.js", "widget.css")
    }
    assert sum(sizes.values()) <= BUDGET, f"{sizes} is over {BUDGET} bytes gzipped"


def test_stripping_comments_keeps_the_code() -> None:
    source = 'const a = "http://x"; // note\n/* block\n */\n  // line\nb(); // end\nc("//x");\n'
    assert strip_comments(source, script=True) == 'const a = "http://x";\nb();\nc("//x");\n'


def test_indentation_goes_unless_a_template_literal_spans_lines() -> None:
    assert strip_comments("if (a) {\n    b();\n}\n", script=True) == "if (a) {\nb();\n}\n"
    spanning = "const t = `one\n    two`;\n  x();\n"
    assert strip_comments(spanning, script=True) == spanning
