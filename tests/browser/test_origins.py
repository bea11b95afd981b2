"""Origins: the publisher's own pages always reach the hub, configured origins are added to
them, and a page the hub keeps refusing says so instead of "Connecting…" for ever."""

from __future__ import annotations

from pathlib import Path

from browserkit import PageWatch, news_site, serve, watched_context
from playwright.sync_api import Browser, expect

from ticker.config import Settings


def test_configured_origins_are_added_to_the_publishers_own() -> None:
    settings = Settings(port=8123, allowed_origins=("https://news.example",))
    assert settings.origins() == [
        None,
        "http://localhost:8123",
        "http://127.0.0.1:8123",
        "https://news.example",
    ]
    assert Settings(port=8123).origins() == [None, "http://localhost:8123", "http://127.0.0.1:8123"]
    assert Settings(allowed_origins=("*",)).origins() is None


def test_the_demo_stays_live_with_another_origin_allowed(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    with (
        serve(tmp_path, TICKER_ALLOWED_ORIGINS="https://news.example") as server,
        watched_context(browser, watch) as context,
    ):
        item = server.post(edition="en", headline="Allowed origins no longer lock out the demo")
        page = context.new_page()
        page.goto(f"{server.base}/demo")
        for edition in ("en", "ar", "es"):
            expect(page.locator(f"#ticker-{edition}")).to_have_attribute("data-state", "live")
        posted = page.locator(f'#ticker-en .ticker-item[data-id="{item["id"]}"]')
        expect(posted).to_have_count(1)
        console = context.new_page()
        console.goto(f"{server.base}/")
        expect(console.locator("#conn")).to_have_attribute("data-state", "live")


def test_a_page_the_hub_refuses_shows_failed_and_says_why(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    watch.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
    watch.allow(r"/sse\?edition=en' from origin .* blocked by CORS policy")
    watch.allow(r"Failed to load resource: net::ERR_FAILED")
    warnings: list[str] = []
    with (
        news_site(tmp_path / "elsewhere") as elsewhere,
        serve(tmp_path) as server,
        watched_context(browser, watch) as context,
    ):
        embed = (
            f'<!doctype html><html lang="en"><head><title>t</title>'
            f'<script src="{server.base}/static/widget.js" defer></script></head><body>'
            '<div data-ticker data-edition="en" id="bar"></div></body></html>'
        )
        page = context.new_page()
        page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        page.goto(elsewhere.page("index.html", embed))
        bar = page.locator("#bar")
        expect(bar).to_have_attribute("data-state", "failed", timeout=15_000)
        expect(bar.locator(".ticker-status")).to_have_text("Ticker unavailable")
        assert any("refused" in w and "TICKER_ALLOWED_ORIGINS" in w for w in warnings), warnings
