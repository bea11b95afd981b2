"""A dead link is noticed within a few heartbeats, a restarted hub is live again within a
second and a half, and the dimmed text of a reconnecting bar stays readable."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from browserkit import PageWatch, serve_on_redis, watched_context
from playwright.sync_api import Browser, expect
from test_widget_bar import contrast

HEARTBEAT = 3  # seconds: what docs/widget.md tells operators to set for browsers


def test_a_frozen_hub_is_noticed_and_a_restarted_one_is_live_again_fast(
    browser: Browser, watch: PageWatch, redis_url: str, tmp_path: Path
) -> None:
    watch.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
    with (
        serve_on_redis(tmp_path, redis_url, TICKER_HEARTBEAT_INTERVAL=str(HEARTBEAT)) as (
            server,
            hub,
        ),
        watched_context(browser, watch) as context,
    ):
        server.post(edition="en", headline="Frozen, then restarted, and still here")
        page = context.new_page()
        page.goto(f"{server.base}/demo")
        bar = page.locator("#ticker-en")
        expect(bar).to_have_attribute("data-state", "live")
        page.wait_for_timeout(500)

        hub.freeze(True)
        frozen = time.monotonic()
        try:
            expect(bar).to_have_attribute("data-state", "reconnecting", timeout=12_000)
            noticed = time.monotonic() - frozen
            ratio = contrast(page, "#ticker-en")
        finally:
            hub.freeze(False)
        print(f"frozen hub noticed after {noticed:.1f} s; dimmed contrast {ratio:.2f}:1")
        assert noticed <= 10, noticed
        assert ratio >= 4.5, ratio
        expect(bar).to_have_attribute("data-state", "live", timeout=10_000)

        # A clean restart: the hub says goodbye (1001), the bar retries within a second.
        page.wait_for_timeout(1000)
        hub.stop()
        expect(bar).to_have_attribute("data-state", "reconnecting")
        page.wait_for_timeout(1500)
        hub.start()
        hub.wait_ready(f"http://127.0.0.1:{server.hub_port}/readyz")
        back = time.monotonic()
        expect(bar).to_have_attribute("data-state", "live", timeout=5_000)
        recovered = time.monotonic() - back
        print(f"live again {recovered:.2f} s after the hub was back")
        assert recovered <= 1.5, recovered
        assert httpx.get(f"{server.base}/readyz").status_code == 200
