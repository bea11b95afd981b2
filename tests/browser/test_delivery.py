"""The widget goes out compressed, under a versioned URL cached for a year, and under the
stable /static/widget.js for embedders with a short cache lifetime."""

from __future__ import annotations

import re

import httpx
from browserkit import Server
from playwright.sync_api import BrowserContext, Response, expect

BUDGET = 10 * 1024


def test_the_widget_is_served_gzipped_and_versioned(server: Server) -> None:
    total = 0
    demo = httpx.get(f"{server.base}/demo").text
    versioned = re.search(r'src="(/static/widget\.[0-9a-f]{12}\.js)"', demo)
    assert versioned, "the demo page loads the versioned widget"
    for path in (versioned.group(1), versioned.group(1).replace(".js", ".css")):
        response = httpx.get(f"{server.base}{path}", headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "Accept-Encoding" in response.headers["vary"]
        total += int(response.headers["content-length"])
    assert total <= BUDGET, f"{total} bytes gzipped on the wire"

    for path in ("/static/widget.js", "/static/widget.css"):
        stable = httpx.get(f"{server.base}{path}", headers={"Accept-Encoding": "gzip"})
        assert stable.headers["content-encoding"] == "gzip"
        assert stable.headers["cache-control"] == "public, max-age=300"
        plain = httpx.get(f"{server.base}{path}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.text == stable.text
    missing = httpx.get(f"{server.base}/static/widget.000000000000.js")
    assert missing.status_code == 404


def test_chromium_gets_the_compressed_versioned_widget(
    context: BrowserContext, server: Server
) -> None:
    seen: dict[str, Response] = {}
    page = context.new_page()
    page.on("response", lambda r: seen.update({r.url: r}) if "/static/widget" in r.url else None)
    page.goto(f"{server.base}/demo")
    expect(page.locator("#ticker-en")).to_have_attribute("data-state", "live")
    names = sorted(url.rsplit("/", 1)[1] for url in seen)
    assert len(names) == 2, names
    assert all(re.fullmatch(r"widget\.[0-9a-f]{12}\.(css|js)", n) for n in names), names
    sizes = 0
    for response in seen.values():
        headers = response.all_headers()
        assert headers["content-encoding"] == "gzip"
        assert "immutable" in headers["cache-control"]
        sizes += int(headers["content-length"])
    assert sizes <= BUDGET
