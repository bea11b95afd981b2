"""The widget, the console and the demo page in real headless Chromium.

Every test watches its pages (see conftest): a console error, an uncaught exception, a CSP
violation or a dialog fails it. Waits are Playwright's own retrying assertions; "within a
second" is a one-second timeout counted from when the publisher confirmed the post.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from browserkit import (
    ARTIFACTS,
    REPORT_CSP,
    ROOT,
    PageWatch,
    Server,
    news_site,
    serve,
    serve_on_redis,
    watched_context,
)
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Route,
    WebSocket,
    expect,
)

EDITIONS = ("en", "ar", "es")
WITHIN_A_SECOND = 1_000


def uid() -> str:
    return uuid.uuid4().hex[:8]


def open_demo(context: BrowserContext, server: Server) -> Page:
    page = context.new_page()
    response = page.goto(f"{server.base}/demo")
    assert response is not None and response.ok
    for edition in EDITIONS:
        expect(widget(page, edition)).to_have_attribute("data-state", "live")
    return page


def open_console(context: BrowserContext, server: Server, *, sign_in: bool = True) -> Page:
    page = context.new_page()
    page.goto(f"{server.base}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    if sign_in:
        page.fill("#token", server.token)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#who-name")).to_have_text("browser-test")
    return page


def widget(page: Page, edition: str) -> Locator:
    return page.locator(f"#ticker-{edition}")


def item_in(ticker: Locator, text: str) -> Locator:
    return ticker.locator(".ticker-item", has_text=text)


def positions(ticker: Locator, ms: int = 600) -> list[float]:
    """The track's horizontal offset sampled in the page every 100 ms."""
    return ticker.locator(".ticker-track").evaluate(
        """async (track, ms) => {
            const x = () => {
                const t = getComputedStyle(track).transform;
                return t === "none" ? 0 : new DOMMatrixReadOnly(t).m41;
            };
            const out = [x()];
            const end = performance.now() + ms;
            while (performance.now() < end) {
                await new Promise((done) => setTimeout(done, 100));
                out.push(x());
            }
            return out;
        }""",
        ms,
    )


def still(xs: list[float]) -> bool:
    return max(xs) - min(xs) < 0.5


def direction(xs: list[float]) -> int:
    """-1 if the bar moves left, +1 if it moves right, 0 if it stands still."""
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    if still(xs):
        return 0
    return 1 if sum(s > 0 for s in steps) > sum(s < 0 for s in steps) else -1


def long_headline(n: int, mark: str) -> str:
    return (
        f"Item {n} {mark}: Local sources report that an occupation drone targeted the road "
        "connecting the town of Beit Jinn and Tell Bat al-Warda with three airstrikes"
    )


def compose(page: Page, *, headline: str, source: str = "", link: str = "") -> None:
    page.fill("#f-source", source)
    page.fill("#f-headline", headline)
    page.fill("#f-link", link)


# --- posting -----------------------------------------------------------------------------


def test_console_post_appears_in_the_en_widget_within_a_second_and_not_in_ar(
    context: BrowserContext, server: Server
) -> None:
    readers = open_demo(context, server)
    desk = open_console(context, server)
    mark = uid()
    headline = f"Gunmen emerged from a tunnel in Rafah {mark}"
    compose(desk, source="Israeli media outlet", headline=headline)
    desk.click("#submit")
    expect(desk.locator("#notice")).to_contain_text("Posted to English (en)")

    en = widget(readers, "en")
    item = item_in(en, mark)
    expect(item).to_have_count(1, timeout=WITHIN_A_SECOND)
    # The source label comes first, then the headline; the newest item leads the bar.
    expect(item).to_have_text(f"Israeli media outlet: {headline}")
    expect(item.locator("bdi")).to_have_text(["Israeli media outlet", headline])
    expect(en.locator(".ticker-item").first).to_contain_text(mark)
    expect(item_in(widget(readers, "ar"), mark)).to_have_count(0)
    expect(item_in(widget(readers, "es"), mark)).to_have_count(0)
    # The console's own live list has it too.
    expect(desk.locator("#items li", has_text=mark)).to_have_count(1)


def test_a_double_click_posts_once(context: BrowserContext, server: Server) -> None:
    readers = open_demo(context, server)
    desk = open_console(context, server)
    posts: list[str] = []
    desk.on(
        "request",
        lambda r: (
            posts.append(r.headers.get("idempotency-key", ""))
            if r.method == "POST" and r.url.endswith("/api/items")
            else None
        ),
    )
    mark = uid()
    compose(desk, headline=f"Double-clicked alert {mark}")
    desk.locator("#submit").dblclick()
    expect(desk.locator("#notice")).to_contain_text("Posted")
    expect(item_in(widget(readers, "en"), mark)).to_have_count(1, timeout=WITHIN_A_SECOND)
    assert len(posts) == 1 and posts[0]
    live = server.api("GET", "/api/items?edition=en").json()["items"]
    assert [i["headline"] for i in live].count(f"Double-clicked alert {mark}") == 1


def test_a_retried_post_reuses_its_key_and_posts_once(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    """The publisher stores the item but its answer is lost: the console retries with the
    same Idempotency-Key and the item is posted once."""
    watch.allow(r"status of 503")
    readers = open_demo(context, server)
    desk = open_console(context, server)
    keys: list[str] = []

    def lose_first_answer(route: Route) -> None:
        keys.append(route.request.headers["idempotency-key"])
        response = route.fetch()
        if len(keys) == 1:
            assert response.status == 201
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={"error": "unavailable"})
        else:
            route.fulfill(response=response)

    desk.route("**/api/items", lose_first_answer)
    mark = uid()
    compose(desk, headline=f"Answer lost on the way {mark}")
    desk.click("#submit")
    expect(desk.locator("#notice")).to_contain_text("posted once")
    assert len(keys) == 2 and keys[0] == keys[1]
    expect(item_in(widget(readers, "en"), mark)).to_have_count(1)
    live = server.api("GET", "/api/items?edition=en").json()["items"]
    assert sum(mark in i["headline"] for i in live) == 1


# --- correcting and withdrawing ---------------------------------------------------------


def test_a_correction_changes_the_item_in_place_and_a_withdrawal_removes_it(
    context: BrowserContext, server: Server
) -> None:
    mark = uid()
    posted = server.post(edition="en", source="Ushakov", headline=f"Russia and teh US {mark}")
    readers = open_demo(context, server)
    desk = open_console(context, server)
    item = item_in(widget(readers, "en"), mark)
    expect(item).to_have_count(1)
    item.evaluate("li => { li.testMark = 'the same element'; }")
    place = item.evaluate("li => [...li.parentNode.children].indexOf(li)")

    row = desk.locator("#items li", has_text=mark)
    row.get_by_role("button", name="Correct").click()
    expect(desk.locator("#f-headline")).to_have_value(f"Russia and teh US {mark}")
    desk.fill("#f-headline", f"Russia and the US agreed {mark}")
    desk.click("#submit")
    expect(desk.locator("#notice")).to_contain_text("Corrected: version 2")

    expect(item).to_have_text(f"Ushakov: Russia and the US agreed {mark}", timeout=WITHIN_A_SECOND)
    expect(item).to_have_attribute("data-version", "2")
    expect(item).to_have_count(1)
    assert item.evaluate("li => li.testMark") == "the same element"
    assert item.evaluate("li => [...li.parentNode.children].indexOf(li)") == place

    # A withdrawal asks first; "Keep it" keeps it.
    dialog = desk.locator("#confirm")
    row.get_by_role("button", name="Withdraw").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Russia and the US agreed {mark}")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    expect(item).to_have_count(1)

    row.get_by_role("button", name="Withdraw").click()
    dialog.get_by_role("button", name="Withdraw").click()
    expect(desk.locator("#notice")).to_contain_text("Withdrawn")
    expect(item).to_have_count(0, timeout=WITHIN_A_SECOND)
    expect(row).to_have_count(0)
    assert posted["id"] not in server.live_ids("en")

    # Undo: the same content goes out again, as a new item.
    desk.get_by_role("button", name="Post it again").click()
    expect(desk.locator("#f-headline")).to_have_value(f"Russia and the US agreed {mark}")
    desk.click("#submit")
    expect(item).to_have_count(1, timeout=WITHIN_A_SECOND)


# --- safety -----------------------------------------------------------------------------


def test_a_markup_headline_is_shown_as_text_and_no_script_runs(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    readers = open_demo(context, server)
    desk = open_console(context, server)
    mark = uid()
    evil = f"<img src=x onerror=alert(1)> {mark}"
    compose(desk, source="<b>Agency</b>", headline=evil)
    expect(desk.locator("#preview .ticker-headline")).to_have_text(evil)
    desk.click("#submit")
    expect(desk.locator("#notice")).to_contain_text("Posted")

    for page in (readers, desk):
        scope = widget(page, "en") if page is readers else page.locator("#items")
        item = scope.locator("li", has_text=mark)
        expect(item).to_have_count(1, timeout=WITHIN_A_SECOND)
        expect(item.locator("bdi").last).to_have_text(evil)
        expect(item.locator("bdi").first).to_have_text("<b>Agency</b>")
        expect(page.locator("img")).to_have_count(0)
        expect(page.locator("li b")).to_have_count(0)

    # Again from the hub's snapshot instead of a live event.
    readers.reload()
    expect(item_in(widget(readers, "en"), mark).locator(".ticker-headline")).to_have_text(evil)
    expect(readers.locator("img")).to_have_count(0)

    # Links are checked in the browser too, whatever the server sent.
    hrefs = readers.evaluate(
        """() => {
            const host = document.createElement("div");
            document.body.append(host);
            const item = (id, link) =>
                ({id, link, version: 1, status: "live", created: id, headline: id, urgency: 3});
            Ticker.view(host, {edition: "en"}).render([
                item("a", "javascript:alert(1)"),
                item("b", "data:text/html,<script>alert(1)</script>"),
                item("c", "https://example.org/story"),
            ]);
            return [...host.querySelectorAll(".ticker-item a")].map((a) => a.href);
        }"""
    )
    assert hrefs == ["https://example.org/story"]
    assert watch.dialogs == []


def test_pages_are_served_with_a_strict_csp(context: BrowserContext, server: Server) -> None:
    page = context.new_page()
    for path in ("/", "/demo", "/static/widget.js", "/static/widget.css"):
        response = page.request.get(f"{server.base}{path}")
        assert response.ok, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_a_csp_violation_would_be_caught(browser: Browser, server: Server) -> None:
    """The watch that every other test relies on does see an inline style being refused."""
    own = PageWatch()
    context = browser.new_context()
    try:
        context.add_init_script(REPORT_CSP)
        page = context.new_page()
        own.attach(page)
        page.goto(f"{server.base}/demo")
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=color:red>x</p>')")
        deadline = time.monotonic() + 5
        while not any("CSP violation" in e for e in own.errors) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert any("CSP violation: style-src" in e for e in own.errors), own.errors
    finally:
        context.close()


# --- right to left ----------------------------------------------------------------------


def test_the_ar_widget_reads_and_scrolls_right_to_left(
    context: BrowserContext, server: Server
) -> None:
    mark = uid()
    mixed = f"نتنياهو يلتقي Witkoff في القدس المحتلة {mark}"
    server.post(edition="ar", source="Axios", headline=mixed)
    for n in range(3):
        server.post(
            edition="ar",
            source="وسائل إعلام إسرائيلية",
            headline=f"{n} نتنياهو وكاتس يجريان تقييماً أمنياً قريباً وتوقعات بموجة هجمات على غزة "
            f"لاحقاً بعد اشتباكات في رفح {mark}",
        )
    page = open_demo(context, server)
    ar, en = widget(page, "ar"), widget(page, "en")
    expect(item_in(ar, mark)).to_have_count(4)
    assert ar.evaluate("e => getComputedStyle(e).direction") == "rtl"
    assert en.evaluate("e => getComputedStyle(e).direction") == "ltr"
    expect(ar).to_have_attribute("dir", "rtl")
    expect(ar).to_have_attribute("lang", "ar")

    # The label sits on the right, where an Arabic reader starts.
    label, viewport = (
        ar.locator(".ticker-label").bounding_box(),
        ar.locator(".ticker-viewport").bounding_box(),
    )
    assert label and viewport and label["x"] > viewport["x"]

    # A Latin name or source inside Arabic text is isolated.
    newest = item_in(ar, "Witkoff")
    expect(newest.locator("bdi.ticker-headline")).to_have_text(mixed)
    expect(newest.locator("bdi.ticker-source")).to_have_text("Axios")
    assert (
        newest.locator("bdi.ticker-headline").evaluate("b => getComputedStyle(b).unicodeBidi")
        == "isolate"
    )

    page.mouse.move(2, 2)
    expect(ar).to_have_class(re.compile(r"\bticker--moving\b"))
    assert direction(positions(ar)) == 1  # text enters from the left and moves right


# --- motion -----------------------------------------------------------------------------


def test_the_pause_control_hover_and_keyboard_focus_stop_the_motion(
    context: BrowserContext, server: Server
) -> None:
    mark = uid()
    for n in range(3):
        server.post(
            edition="en",
            source="Agencies",
            headline=long_headline(n, mark),
            link=f"https://example.org/{mark}/{n}",
        )
    page = open_demo(context, server)
    en = widget(page, "en")
    expect(item_in(en, mark)).to_have_count(3)
    expect(en).to_have_class(re.compile(r"\bticker--moving\b"))
    page.mouse.move(2, 2)
    assert direction(positions(en)) == -1  # English moves left

    toggle = en.locator(".ticker-toggle")
    expect(toggle).to_have_accessible_name("Pause ticker")
    toggle.click()
    expect(toggle).to_have_accessible_name("Play ticker")
    page.mouse.move(2, 2)
    stopped = positions(en)
    assert still(stopped), stopped

    # Play again from the keyboard: it continues where it stopped (WCAG F16).
    toggle.press("Enter")
    expect(toggle).to_have_accessible_name("Pause ticker")
    resumed = positions(en, 400)
    assert direction(resumed) == -1
    assert abs(resumed[0] - stopped[-1]) < 15, (stopped, resumed)

    # A pointer over the headlines holds them, even when a new item arrives meanwhile.
    en.locator(".ticker-viewport").hover()
    assert still(positions(en, 400))
    looked_at = item_in(en, f"Item 1 {mark}")
    before = looked_at.bounding_box()
    server.post(edition="en", headline=f"Arrives while the reader reads {mark}")
    expect(item_in(en, mark)).to_have_count(4, timeout=WITHIN_A_SECOND)
    after = looked_at.bounding_box()
    assert before and after and abs(after["x"] - before["x"]) < 1, (before, after)
    page.mouse.move(2, 2)
    assert direction(positions(en, 400)) == -1

    # Keyboard focus on a headline holds the bar and brings that headline into view.
    page.locator(".lede a").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = en.locator("a.ticker-link").nth(1)
    expect(focused).to_be_focused()
    assert still(positions(en, 400))
    box, view = focused.bounding_box(), en.locator(".ticker-viewport").bounding_box()
    assert box and view and view["x"] <= box["x"] < view["x"] + view["width"]


def test_with_reduced_motion_nothing_moves(
    browser: Browser, server: Server, watch: PageWatch
) -> None:
    mark = uid()
    for n in range(2):
        server.post(edition="en", headline=long_headline(n, mark), link=f"https://example.org/{n}")
    with watched_context(browser, watch, reduced_motion="reduce") as context:
        page = open_demo(context, server)
        en = widget(page, "en")
        for edition in EDITIONS:
            expect(widget(page, edition)).to_have_class(re.compile(r"\bticker--still\b"))
        expect(en).not_to_have_class(re.compile(r"\bticker--moving\b"))
        track = en.locator(".ticker-track")
        assert track.evaluate("t => t.getAnimations().length") == 0
        before = en.locator(".ticker-item.is-current").bounding_box()
        assert still(positions(en, 1000))
        assert en.locator(".ticker-item.is-current").bounding_box() == before

        # One headline at a time; the next one is a keypress away.
        expect(en.locator(".ticker-item:visible")).to_have_count(1)
        first = en.locator(".ticker-item:visible").text_content()
        en.get_by_role("button", name="Next headline").focus()
        page.keyboard.press("Enter")
        expect(en.locator(".ticker-item:visible")).to_have_count(1)
        expect(en.locator(".ticker-item:visible")).not_to_have_text(first or "")
        assert track.evaluate("t => t.getAnimations().length") == 0


# --- reconnecting -----------------------------------------------------------------------


def test_the_widget_resumes_after_a_hub_restart_with_each_item_once(
    browser: Browser, watch: PageWatch, redis_url: str, tmp_path: Path
) -> None:
    # While the hub is down the browser logs its failed connection attempts.
    watch.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
    with (
        serve_on_redis(tmp_path, redis_url) as (server, hub),
        watched_context(browser, watch) as context,
    ):
        kept = server.post(edition="en", headline="Kept through the outage, then corrected")
        pulled = server.post(edition="en", headline="Withdrawn during the outage")
        sockets: list[tuple[str, list[str]]] = []

        def record(ws: WebSocket) -> None:
            frames: list[str] = []
            sockets.append((ws.url, frames))
            ws.on("framereceived", lambda payload: frames.append(str(payload)))

        streams: list[str] = []  # the widget may come back over its stream fallback
        context.on("page", lambda p: p.on("websocket", record))
        context.on(
            "page", lambda p: p.on("request", lambda r: "/sse?" in r.url and streams.append(r.url))
        )
        page = open_demo(context, server)
        en = widget(page, "en")
        expect(en.locator(".ticker-item")).to_have_count(2)

        hub.stop()
        expect(en).to_have_attribute("data-state", "reconnecting")
        expect(en.locator(".ticker-status")).to_have_text("Reconnecting…")
        missed = [
            server.post(edition="en", headline=f"Posted while the hub was down {n}")
            for n in range(3)
        ]
        server.correct(kept["id"], headline="Kept through the outage and corrected")
        server.withdraw(pulled["id"])
        server.post(edition="ar", headline="عاجل أثناء انقطاع المحور")

        hub.start()
        expect(en).to_have_attribute("data-state", "live", timeout=20_000)
        expected = server.live_ids("en")
        assert set(expected) == {kept["id"], *(m["id"] for m in missed)}
        expect(en.locator(".ticker-item")).to_have_count(len(expected))
        for item_id in expected:
            expect(en.locator(f'.ticker-item[data-id="{item_id}"]')).to_have_count(1)
        ids = en.locator(".ticker-item").evaluate_all("items => items.map((li) => li.dataset.id)")
        assert ids == expected  # the same items in the same order, newest first
        expect(en.locator(f'[data-id="{kept["id"]}"]')).to_have_text(
            "Kept through the outage and corrected"
        )

        # It said where it was and got just what it missed: a resume, not a fresh copy. If
        # the hub came back during its one trial of the stream fallback, it resumed there.
        url, frames = next(s for s in reversed(sockets) if "edition=en" in s[0])
        en_streams = [u for u in streams if "edition=en" in u]
        if frames:
            assert "since=" in url
            greeting = json.loads(frames[0])
            assert isinstance(greeting, list) and greeting[0]["type"] == "resumed", frames[0][:200]
            assert greeting[0]["missed"] == 5  # three posts, a correction and a withdrawal
        else:
            assert en_streams and "since=" in en_streams[-1], (url, streams)

        # And it is live again.
        after = server.post(edition="en", headline="Posted after the hub came back")
        expect(en.locator(f'[data-id="{after["id"]}"]')).to_have_count(1, timeout=WITHIN_A_SECOND)


def test_a_silent_link_is_noticed_by_the_heartbeat_and_the_widget_catches_up(
    browser: Browser, watch: PageWatch, redis_url: str, tmp_path: Path
) -> None:
    """A frozen hub keeps the socket open but sends nothing, like a link that died behind a
    proxy: only the missing heartbeats tell the widget."""
    with (
        serve_on_redis(tmp_path, redis_url, TICKER_HEARTBEAT_INTERVAL="1") as (server, hub),
        watched_context(browser, watch) as context,
    ):
        page = open_demo(context, server)
        en = widget(page, "en")
        expect(en).to_have_attribute("data-state", "live")
        hub.freeze(True)
        try:
            expect(en).to_have_attribute("data-state", "reconnecting", timeout=10_000)
            missed = server.post(edition="en", headline="Posted while the link was silent")
        finally:
            hub.freeze(False)
        expect(en).to_have_attribute("data-state", "live", timeout=20_000)
        expect(en.locator(f'.ticker-item[data-id="{missed["id"]}"]')).to_have_count(1)


def test_a_news_site_on_another_origin_embeds_the_widget_and_a_foreign_page_is_refused(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    """One script tag and one element on the site's own page. The hub lets the site's origin
    in and refuses any other page's: no cross-site WebSocket hijacking."""
    watch.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
    # Then it tries Server-Sent Events, refused too, and gives up with "failed".
    watch.allow(r"/sse\?edition=ar&region=MENA' from origin .* blocked by CORS policy")
    watch.allow(r"Failed to load resource: net::ERR_FAILED")
    with (
        news_site(tmp_path / "site") as site,
        news_site(tmp_path / "elsewhere") as elsewhere,
        serve(tmp_path, TICKER_ALLOWED_ORIGINS=site.origin) as server,
        watched_context(browser, watch) as context,
    ):
        item = server.post(edition="ar", headline="عاجل: تكليف السفير سيمون كرم", regions=["MENA"])
        embed = (
            f'<!doctype html><html><head><script src="{server.base}/static/widget.js" defer>'
            '</script></head><body><div data-ticker data-edition="ar" data-region="MENA" '
            'id="bar"></div></body></html>'
        )
        page = context.new_page()
        page.goto(site.page("index.html", embed))
        bar = page.locator("#bar")
        expect(bar).to_have_attribute("data-state", "live")
        expect(bar).to_have_attribute("dir", "rtl")
        expect(bar.locator(f'.ticker-item[data-id="{item["id"]}"]')).to_have_count(1)

        foreign = context.new_page()
        foreign.goto(elsewhere.page("index.html", embed))
        other = foreign.locator("#bar")
        expect(other).to_have_attribute("data-state", re.compile("connecting|reconnecting"))
        foreign.wait_for_timeout(1500)
        expect(other).not_to_have_attribute("data-state", "live")
        expect(other.locator(".ticker-item")).to_have_count(0)


def test_data_hub_connects_straight_to_the_hub_without_asking_the_publisher(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    with (
        news_site(tmp_path / "site") as site,
        serve(tmp_path, TICKER_ALLOWED_ORIGINS=site.origin) as server,
        watched_context(browser, watch) as context,
    ):
        item = server.post(edition="es", headline="Última hora: acuerdo en Ginebra")
        hub = f"ws://127.0.0.1:{server.hub_port}/ws"
        embed = (
            f'<!doctype html><html><head><script src="{server.base}/static/widget.js" defer>'
            f'</script></head><body><div data-ticker data-edition="es" data-hub="{hub}" '
            'id="bar"></div></body></html>'
        )
        page = context.new_page()
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        page.goto(site.page("index.html", embed))
        bar = page.locator("#bar")
        expect(bar).to_have_attribute("data-state", "live")
        expect(bar.locator(f'.ticker-item[data-id="{item["id"]}"]')).to_have_count(1)
        assert not [url for url in asked if "/api/config" in url], asked


# --- the console ------------------------------------------------------------------------


def test_a_console_post_with_a_bad_field_shows_the_error_next_to_it(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")
    desk = open_console(context, server)
    mark = uid()
    compose(desk, headline=f"A fine headline {mark}", link="javascript:alert(1)")
    desk.click("#submit")
    link_field = desk.locator('[data-field="link"]')
    expect(link_field.locator(".field-error")).to_have_text("must be an http:// or https:// URL")
    expect(desk.locator("#f-link")).to_have_attribute("aria-invalid", "true")
    expect(desk.locator("#f-link")).to_be_focused()
    expect(desk.locator('[data-field="headline"] .field-error')).to_be_empty()
    assert "e-link" in (desk.locator("#f-link").get_attribute("aria-describedby") or "")

    # Editing the field clears its error; a headline over the limit is flagged at its field.
    desk.fill("#f-link", "")
    expect(link_field.locator(".field-error")).to_be_empty()
    desk.fill("#f-headline", "x" * 301)
    expect(desk.locator("#c-headline")).to_have_text("301 / 300")
    expect(desk.locator("#c-headline")).to_have_class(re.compile(r"\bover\b"))
    desk.click("#submit")
    expect(desk.locator('[data-field="headline"] .field-error')).to_have_text(
        "must be at most 300 characters (got 301)"
    )
    expect(desk.locator("#f-headline")).to_be_focused()
    assert not any(mark in i for i in server.live_ids("en"))


def test_the_console_keeps_the_token_in_the_tab_and_out_of_urls(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of 401")
    desk = open_console(context, server, sign_in=False)
    urls: list[str] = []
    desk.on("request", lambda r: urls.append(r.url))
    desk.fill("#token", "tkr_not-a-real-token")
    desk.click("#sign-in-form button[type=submit]")
    expect(desk.locator("#token-error")).to_have_text("This token is not accepted.")
    expect(desk.locator("#compose")).to_be_hidden()

    desk.fill("#token", server.token)
    desk.click("#sign-in-form button[type=submit]")
    expect(desk.locator("#who-name")).to_have_text("browser-test")
    assert desk.evaluate("sessionStorage.getItem('ticker.token')") == server.token
    desk.reload()
    expect(desk.locator("#who-name")).to_have_text("browser-test")
    desk.get_by_role("button", name="Sign out").click()
    expect(desk.locator("#sign-in")).to_be_visible()
    assert desk.evaluate("sessionStorage.getItem('ticker.token')") is None
    assert all(server.token not in url for url in [*urls, desk.url])


def test_the_console_preview_is_the_widget_and_follows_the_edition(
    context: BrowserContext, server: Server
) -> None:
    desk = open_console(context, server)
    preview = desk.locator("#preview .ticker")
    compose(desk, source="Lebanese Presidency", headline="President assigns Simon Karam")
    expect(desk.locator("#c-headline")).to_have_text("29 / 300")
    expect(preview.locator(".ticker-item")).to_have_text(
        "Lebanese Presidency: President assigns Simon Karam"
    )
    expect(preview).to_have_attribute("dir", "ltr")
    desk.select_option("#f-urgency", "1")
    expect(preview.locator(".ticker-flag")).to_have_text("Flash")

    desk.select_option("#f-edition", "ar")
    compose(desk, source="الرئاسة اللبنانية", headline="الرئيس كلّف Simon Karam برئاسة اللجنة")
    expect(preview).to_have_attribute("dir", "rtl")
    assert preview.evaluate("e => getComputedStyle(e).direction") == "rtl"
    expect(desk.locator("#f-headline")).to_have_attribute("dir", "rtl")
    expect(preview.locator(".ticker-headline")).to_have_text("الرئيس كلّف Simon Karam برئاسة اللجنة")
    # The live list follows the edition being written for.
    expect(desk.locator("#tabs button[aria-pressed=true]")).to_have_text("Arabic (ar)")


# --- screenshots ------------------------------------------------------------------------

SEED = [
    (
        "en",
        "Ushakov",
        "Russia and the United States agreed not to disclose the substance of "
        "the Putin–Witkoff talks.",
        3,
        ["Europe"],
    ),
    (
        "en",
        "Lebanese Presidency",
        "President has assigned former Ambassador Simon Karam to "
        "head military technical committee in talks.",
        2,
        ["MENA"],
    ),
    (
        "en",
        "Israeli media outlet",
        "Gunmen emerged from a tunnel in Rafah and attacked forces "
        "in the area with gunfire and anti-tank missiles",
        3,
        ["Palestine"],
    ),
    (
        "en",
        "Occupied Palestine",
        "Five members of the IOF wounded in clashes that took place in Rafah on Wednesday",
        1,
        ["Palestine"],
    ),
    (
        "ar",
        "الرئاسة اللبنانية",
        "الرئيس كلّف السفير السابق سيمون كرم برئاسة اللجنة التقنية العسكرية في المفاوضات",
        3,
        ["MENA"],
    ),
    (
        "ar",
        "وسائل إعلام إسرائيلية",
        "نتنياهو وكاتس يجريان تقييماً أمنياً قريباً وتوقعات بموجة هجمات على غزة لاحقاً",
        2,
        ["Palestine"],
    ),
    (
        "ar",
        "فلسطين المحتلة",
        "إصابة خمسة من جنود الاحتلال في اشتباكات في رفح يوم الأربعاء",
        1,
        ["Palestine"],
    ),
    (
        "es",
        "Presidencia libanesa",
        "El presidente encargó al exembajador Simon Karam dirigir "
        "el comité técnico militar en las conversaciones.",
        3,
        ["MENA"],
    ),
    (
        "es",
        "Medios israelíes",
        "Hombres armados salieron de un túnel en Rafah y atacaron a las fuerzas en la zona",
        2,
        ["Palestine"],
    ),
    (
        "es",
        "Palestina ocupada",
        "Cinco miembros de las fuerzas de ocupación heridos en enfrentamientos en Rafah",
        3,
        ["Palestine"],
    ),
]


def test_screenshots_of_the_demo_page_and_the_console(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    """On a fresh server with the seed page's alerts, so the pictures are the same each run.
    The pages close before the server stops, or they would log failed reconnections."""
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(tmp_path) as server, watched_context(browser, watch) as context:
        for edition, source, headline, urgency, regions in SEED:
            server.post(
                edition=edition, source=source, headline=headline, urgency=urgency, regions=regions
            )
        demo = open_demo(context, server)
        expect(demo.locator(".ticker-item")).to_have_count(len(SEED))
        demo.screenshot(path=ARTIFACTS / "demo.png", full_page=True, animations="disabled")

        desk = open_console(context, server)
        desk.select_option("#f-edition", "ar")
        compose(
            desk,
            source="المكتب في بيروت",
            headline="بيان الرئاسة اللبنانية يؤكد استعداد لبنان للمشاركة في المحادثات بفعالية",
        )
        expect(desk.locator("#items li")).to_have_count(3)
        desk.locator("#f-headline").blur()
        desk.screenshot(path=ARTIFACTS / "console.png", full_page=True, animations="disabled")

        demo_layout = page_layout(demo, "[data-ticker]")
        desk_layout = page_layout(desk, "#items li")

    check_picture(ARTIFACTS / "demo.png", demo_layout)
    for bar in demo_layout["boxes"]:
        check_bar_colours(ARTIFACTS / "demo.png", demo_layout, bar)
    check_picture(ARTIFACTS / "console.png", desk_layout)
    assert len(desk_layout["boxes"]) == 3
    for name in ("demo.png", "console.png"):
        # The pictures in docs/ change only when asked: TICKER_UPDATE_SCREENSHOTS=1 scripts/test
        if os.environ.get("TICKER_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(ARTIFACTS / name, ROOT / "docs" / name)


# What the page looked like when its picture was taken: its size, and for each element of
# interest its box (in CSS pixels, from the top of the page), text and colours, with those
# of its BREAKING label when it has one.
_LAYOUT = """selector => {
    const root = document.documentElement;
    const rgb = value => (value.match(/\\d+/g) || []).slice(0, 3).map(Number);
    const box = el => {
        const r = el.getBoundingClientRect();
        return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
    };
    return {
        width: root.scrollWidth, height: root.scrollHeight, scale: devicePixelRatio,
        boxes: [...document.querySelectorAll(selector)].map(el => {
            const bar = el.classList.contains("ticker") ? el : el.querySelector(".ticker") || el;
            const label = bar.querySelector(".ticker-label");
            return {
                box: box(bar), text: bar.innerText.trim(),
                background: rgb(getComputedStyle(bar).backgroundColor),
                id: el.id,
                label: label && {
                    box: box(label), text: label.innerText.trim(),
                    background: rgb(getComputedStyle(label).backgroundColor),
                },
            };
        }),
    };
}"""


def page_layout(page: Page, selector: str) -> dict:
    return page.evaluate(_LAYOUT, selector)


def check_picture(path: Path, layout: dict) -> None:
    """The PNG is the whole page at its size, and each element is inside it, visible and
    not empty."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        scale = layout["scale"]
        assert image.size == (
            round(layout["width"] * scale),
            round(layout["height"] * scale),
        ), (path.name, image.size, layout["width"], layout["height"], scale)
        assert layout["boxes"], f"{path.name}: nothing to check"
        for element in layout["boxes"]:
            box = element["box"]
            assert box["width"] > 100 and box["height"] > 10, (path.name, element)
            assert box["x"] >= 0 and box["x"] + box["width"] <= layout["width"] + 1, element
            assert box["y"] >= 0 and box["y"] + box["height"] <= layout["height"] + 1, element
            assert element["text"], (path.name, element)
            # Something is drawn there: not one flat colour.
            region = image.convert("RGB").crop(_scaled(box, scale))
            colours = region.getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 10, (path.name, element["text"][:40])


def check_bar_colours(path: Path, layout: dict, bar: dict) -> None:
    """In the picture, the bar is the colour the page gave it (the BREAKING red unless
    themed) and its label (BREAKING, in the edition's language) is the label's colour."""
    from PIL import Image

    label = bar["label"]
    assert label is not None and label["text"], bar
    if bar["id"] == "ticker-en":
        assert label["text"].upper() == "BREAKING", label
    scale = layout["scale"]
    with Image.open(path) as picture:
        image = picture.convert("RGB")
        box, lbox = bar["box"], label["box"]
        row = box["y"] + 3  # above the text, below any rounded corner's curve
        # The part of the bar beside the label (right of it, or left of it in Arabic).
        right = (lbox["x"] + lbox["width"] + 12, box["x"] + box["width"] - 12)
        left = (box["x"] + 12, lbox["x"] - 12)
        start, end = max(right, left, key=lambda span: span[1] - span[0])
        assert end - start > 100, bar
        assert _share_near(image, row, start, end, scale, bar["background"]) > 0.9, (
            bar["text"][:40],
            bar["background"],
        )
        assert (
            _share_near(image, row, lbox["x"] + 12, lbox["x"] + lbox["width"] - 20, scale,
                        label["background"])
            > 0.9
        ), (bar["text"][:40], label["background"])  # fmt: skip
        assert bar["background"] != label["background"], bar


def _scaled(box: dict, scale: float) -> tuple[int, int, int, int]:
    return (
        round(box["x"] * scale),
        round(box["y"] * scale),
        round((box["x"] + box["width"]) * scale),
        round((box["y"] + box["height"]) * scale),
    )


def _share_near(image, y: float, x0: float, x1: float, scale: float, colour: list[int]) -> float:
    """The share of pixels on row `y` from `x0` to `x1` (CSS pixels) within a few levels of
    `colour`."""
    pixels = [image.getpixel((round(x * scale), round(y * scale))) for x in range(int(x0), int(x1))]
    near = [p for p in pixels if all(abs(a - b) <= 8 for a, b in zip(p, colour, strict=True))]
    return len(near) / max(len(pixels), 1)
