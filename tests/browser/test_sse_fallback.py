"""Where WebSockets are broken, the widget reads the same hub as Server-Sent Events and
resumes with its cursor, in real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from browserkit import PageWatch, news_site, serve, watched_context
from playwright.sync_api import Browser, expect
from wsblocker import websocket_blocker


def test_the_widget_falls_back_to_server_sent_events_and_resumes(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    watch.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
    with (
        news_site(tmp_path / "site") as site,
        serve(tmp_path, TICKER_ALLOWED_ORIGINS=site.origin) as server,
        websocket_blocker(server.hub_port) as blocker,
        watched_context(browser, watch) as context,
    ):
        first = server.post(edition="en", headline="Before the fallback")
        hub = f"ws://127.0.0.1:{blocker.port}/ws"
        embed = (
            f'<!doctype html><html><head><script src="{server.base}/static/widget.js" defer>'
            f'</script></head><body><div data-ticker data-edition="en" data-hub="{hub}" '
            'id="bar"></div></body></html>'
        )
        page = context.new_page()
        page.goto(site.page("index.html", embed))
        bar = page.locator("#bar")
        expect(bar).to_have_attribute("data-state", "live", timeout=15_000)
        expect(bar.locator(f'.ticker-item[data-id="{first["id"]}"]')).to_have_count(1)
        assert blocker.refused >= 2
        assert [line for line in blocker.passed if line.startswith("GET /sse?edition=en")]

        live = server.post(edition="en", headline="Live over the stream")
        expect(bar.locator(f'.ticker-item[data-id="{live["id"]}"]')).to_have_count(1)

        # The network blips: the widget comes back over the stream with its cursor and gets
        # what it missed, once.
        streams_before = len(blocker.passed)
        blocker.drop_all()
        missed = server.post(edition="en", headline="Posted while the stream was down")
        # Back within its backoff (a few seconds after two failed WebSockets), with the cursor.
        try:
            expect(bar.locator(f'.ticker-item[data-id="{missed["id"]}"]')).to_have_count(
                1, timeout=15_000
            )
        except AssertionError as exc:
            state = bar.get_attribute("data-state")
            raise AssertionError(f"{exc}\nstate {state}; requests {blocker.passed}") from None
        expect(bar).to_have_attribute("data-state", "live")
        resumed = blocker.passed[streams_before:]
        assert resumed and all("since=" in line for line in resumed), resumed
        ids = bar.locator(".ticker-item").evaluate_all("(nodes) => nodes.map((n) => n.dataset.id)")
        counts = {ids.count(item["id"]) for item in (first, live, missed)}
        assert len(counts) == 1 and counts.pop() >= 1, ids  # each item as often as the others
