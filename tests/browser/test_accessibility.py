"""No serious or critical axe-core violations on the demo page, the console and a news
site's page with the widget; the demo and the console follow the reader's dark mode."""

from __future__ import annotations

import json
from pathlib import Path

from browserkit import PageWatch, Server, news_site, serious, serve, watched_context
from playwright.sync_api import Browser, Page, expect


def test_no_serious_axe_violations(browser: Browser, watch: PageWatch, tmp_path: Path) -> None:
    # axe reads the widget's stylesheet from the other origin with an XHR, which CORS stops.
    watch.allow(r"Access to XMLHttpRequest at '.*/static/widget[.\w]*\.css' .* blocked by CORS")
    watch.allow(r"Failed to load resource: net::ERR_FAILED")
    with (
        news_site(tmp_path / "site") as site,
        serve(tmp_path, TICKER_ALLOWED_ORIGINS=site.origin) as server,
    ):
        server.post(edition="en", urgency=1, headline="Flash: the axe finds nothing serious")
        server.post(edition="en", headline="A routine item", link="https://example.org/a")
        server.post(edition="ar", headline="خبر عاجل للاختبار")
        embed = site.page(
            "index.html",
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>News</title>'
            f'<script src="{server.base}/static/widget.js" defer></script></head><body>'
            '<main><h1>News</h1><div data-ticker data-edition="en" id="bar"></div></main>'
            "</body></html>",
        )
        for scheme in ("light", "dark"):
            with watched_context(browser, watch, bypass_csp=True, color_scheme=scheme) as context:
                found = {}
                page = context.new_page()
                page.goto(f"{server.base}/demo")
                expect(page.locator("#ticker-en")).to_have_attribute("data-state", "live")
                found["demo"] = serious(page)
                page = signed_in_console(context.new_page(), server)
                found["console"] = serious(page)
                page = context.new_page()
                page.goto(embed)
                expect(page.locator("#bar")).to_have_attribute("data-state", "live")
                found["embed"] = serious(page)
                assert not any(found.values()), f"{scheme}: {json.dumps(found, indent=1)}"


def signed_in_console(page: Page, server: Server) -> Page:
    page.goto(f"{server.base}/")
    page.fill("#token", server.token)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who-name")).to_have_text("browser-test")
    return page


def luminance(page: Page) -> float:
    return page.evaluate(
        """() => {
            const c = getComputedStyle(document.documentElement).backgroundColor;
            const [r, g, b] = c.match(/[\\d.]+/g).map(Number);
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        }"""
    )


def test_the_demo_and_the_console_follow_dark_mode(
    browser: Browser, watch: PageWatch, server: Server
) -> None:
    for scheme, dark in (("dark", True), ("light", False)):
        with watched_context(browser, watch, color_scheme=scheme) as context:
            for path in ("/demo", "/"):
                page = context.new_page()
                page.goto(f"{server.base}{path}")
                assert (luminance(page) < 0.2) is dark, (scheme, path, luminance(page))
