"""The live page in real headless Chromium: with script off it is a plain page of headlines,
with script on the widget's live bar enhances it, and the JSON-LD never runs or breaks CSP."""

from __future__ import annotations

import uuid

from browserkit import PageWatch, Server, watched_context
from playwright.sync_api import Browser, BrowserContext, expect


def uid() -> str:
    return uuid.uuid4().hex[:8]


def test_without_javascript_the_page_shows_the_headlines_as_text(
    browser: Browser, server: Server
) -> None:
    mark = uid()
    evil = f'<script>alert("{mark}")</script> & <img src=x onerror=alert(1)>'
    item = server.post(edition="en", headline=evil, source="Desk")
    arabic = server.post(edition="ar", headline=f"عاجل {mark}")
    watch = PageWatch()
    with watched_context(browser, watch, java_script_enabled=False) as context:
        page = context.new_page()
        response = page.goto(f"{server.base}/live/en")
        assert response is not None and response.ok
        line = page.locator(f"li[id='{item['id']}']")
        expect(line.locator(".live-headline")).to_have_text(evil)
        expect(line.locator(".live-source")).to_have_text("Desk:")
        expect(page.locator("img")).to_have_count(0)
        expect(page.locator("[data-ticker] *")).to_have_count(0)  # no script, no bar

        page.goto(f"{server.base}/live/ar")
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        expect(page.locator(f"li[id='{arabic['id']}'] .live-headline")).to_have_text(f"عاجل {mark}")
    assert watch.dialogs == []


def test_with_javascript_the_widget_goes_live_on_the_page(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    before = server.post(edition="ar", headline=f"قبل {uid()}")
    page = context.new_page()
    page.goto(f"{server.base}/live/ar")
    bar = page.locator("[data-ticker]")
    expect(bar).to_have_attribute("data-state", "live")
    expect(bar.locator(".ticker-item", has_text=before["headline"])).to_have_count(1)
    later = f"بعد {uid()}"
    server.post(edition="ar", headline=later)
    expect(bar.locator(".ticker-item", has_text=later)).to_have_count(1)
    # The server-rendered list stays as it was loaded, below the live bar.
    expect(page.locator(f"li[id='{before['id']}']")).to_have_count(1)
    assert page.evaluate("document.querySelector('script[type=\"application/ld+json\"]') !== null")
    assert watch.dialogs == []
