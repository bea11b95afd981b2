"""The bar itself: a loop that is never empty, the newest N items with flashes first, a
compact label on phones, no layout shift, touch, contrast and what screen readers hear."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from browserkit import NewsSite, PageWatch, Server, news_site, serve, watched_context
from playwright.sync_api import Browser, Page, expect

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 768}


def headline(n: int, mark: str) -> str:
    return f"{mark} {n}: the council meets tonight to vote on the new budget for the schools"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NewsSite, Server]]:
    tmp = tmp_path_factory.mktemp("bar")
    with (
        news_site(tmp / "site") as news,
        serve(tmp, TICKER_ALLOWED_ORIGINS=news.origin) as server,
    ):
        yield news, server


def embed(news: NewsSite, server: Server, name: str, attrs: str = "", style: str = "") -> str:
    return news.page(
        name,
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>News</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<script src="{server.base}/static/widget.js" defer></script>'
        "<style>body{margin:0;font-family:sans-serif} [data-ticker]{min-height:2.75rem}"
        "@media (max-width:480px) and (prefers-reduced-motion:reduce)"
        "{[data-ticker]{min-height:7rem}}"
        f"{style}</style></head><body><h1>Today</h1>"
        f'<div data-ticker data-edition="en" id="bar" {attrs}></div>'
        "<p>Story text below the bar.</p></body></html>",
    )


@contextlib.contextmanager
def opened(browser: Browser, watch: PageWatch, url: str, **options: object) -> Iterator[Page]:
    options.setdefault("reduced_motion", "no-preference")
    with watched_context(browser, watch, **options) as context:
        page = context.new_page()
        page.goto(url)
        expect(page.locator("#bar")).to_have_attribute("data-state", "live")
        yield page


def ids(page: Page) -> list[str]:
    return page.locator("#bar .ticker-item").evaluate_all("(n) => n.map((li) => li.dataset.id)")


# Every 100 ms: where each headline (both copies) stands and whether any is in view.
SAMPLER = """(ms) => {
    const bar = document.querySelector("#bar");
    const view = bar.querySelector(".ticker-viewport").getBoundingClientRect();
    window.samples = [];
    const end = performance.now() + ms;
    const tick = () => {
        const at = {};
        let seen = false;
        for (const n of bar.querySelectorAll(".ticker-item, .ticker-dup")) {
            const r = n.getBoundingClientRect();
            if (r.width > 0 && r.right > view.left + 1 && r.left < view.right - 1) seen = true;
            (at[n.dataset.id || n.dataset.copy] ||= []).push(r.left);
        }
        window.samples.push({t: performance.now(), seen, at});
        if (performance.now() < end) setTimeout(tick, 100);
    };
    tick();
}"""


def test_the_loop_is_never_empty_and_an_arrival_does_not_jump_back(
    browser: Browser, watch: PageWatch, site: tuple[NewsSite, Server]
) -> None:
    news, server = site
    mark = f"loop{time.time_ns()}"
    for n in range(3):
        server.post(edition="en", headline=headline(n, mark))
    url = embed(news, server, "loop.html", 'data-max-items="3"', ".ticker{--ticker-speed:300}")
    with opened(browser, watch, url, viewport=DESKTOP) as page:
        bar = page.locator("#bar")
        expect(bar).to_have_class(re.compile(r"\bticker--moving\b"))
        expect(bar.locator(".ticker-item")).to_have_count(3)
        loop = float(
            bar.locator(".ticker-track").evaluate(
                "(t) => parseFloat(t.style.getPropertyValue('--tk-dur'))"
            )
        )
        assert 2 < loop < 15, loop
        ms = int(loop * 1000) + 1500
        page.evaluate(SAMPLER, ms)
        page.wait_for_timeout(ms // 2)
        arrived = server.post(edition="en", headline=headline(9, mark))
        page.wait_for_timeout(ms - ms // 2 + 300)
        samples = page.evaluate("window.samples")
        assert ids(page)[0] == arrived["id"] and len(ids(page)) == 3
    assert len(samples) > loop * 5
    assert all(s["seen"] for s in samples), "the bar was empty at some sample"
    # Between two samples every headline moved left by about speed x time, never back.
    for a, b in zip(samples, samples[1:], strict=False):
        expected = -300 * (b["t"] - a["t"]) / 1000
        for item_id in set(a["at"]) & set(b["at"]):
            best = min(abs(y - x - expected) for x in a["at"][item_id] for y in b["at"][item_id])
            assert best < 40, (item_id, a, b)


def test_a_flash_leads_for_its_minutes_and_only_the_newest_items_show(
    browser: Browser, watch: PageWatch, site: tuple[NewsSite, Server]
) -> None:
    news, server = site
    mark = f"flash{time.time_ns()}"
    flash = server.post(edition="en", urgency=1, headline=f"{mark} flash")
    url = embed(news, server, "flash.html", 'data-max-items="4" data-flash-minutes="0.1"')
    with opened(browser, watch, url, viewport=DESKTOP) as page:
        routine = [server.post(edition="en", headline=f"{mark} routine {n}") for n in range(2)]
        expect(page.locator(f'#bar .ticker-item[data-id="{routine[1]["id"]}"]')).to_have_count(1)
        assert ids(page)[:3] == [flash["id"], routine[1]["id"], routine[0]["id"]]
        assert len(ids(page)) == 4
        # After six seconds the flash takes its place by time again.
        expect(page.locator("#bar .ticker-item").first).to_have_attribute(
            "data-id", routine[1]["id"], timeout=10_000
        )
        assert ids(page)[:3] == [routine[1]["id"], routine[0]["id"], flash["id"]]


CLS = """async (ms) => {
    let shift = 0;
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
            if (e.hadRecentInput) continue;
            shift += e.value;
            window.shifts = [...(window.shifts || []), [e.startTime, e.value,
                ...e.sources.map((s) => `${s.node?.className || s.node?.nodeName}`)]];
        }
    }).observe({type: "layout-shift", buffered: true});
    await new Promise((done) => setTimeout(done, ms));
    return shift;
}"""


@pytest.mark.parametrize(
    ("viewport", "motion"),
    [(PHONE, "no-preference"), (PHONE, "reduce"), (DESKTOP, "no-preference")],
    ids=["phone", "phone-still", "desktop"],
)
def test_no_layout_shift_while_items_arrive(
    browser: Browser,
    watch: PageWatch,
    site: tuple[NewsSite, Server],
    viewport: dict[str, int],
    motion: str,
) -> None:
    news, server = site
    mark = f"cls{time.time_ns()}"
    url = embed(news, server, "cls.html", 'style="--ticker-dwell:2"' if motion else "")
    with opened(browser, watch, url, viewport=viewport, reduced_motion=motion) as page:
        handle = page.evaluate_handle(f"new Promise((ok) => ({CLS})(16000).then(ok))")
        long = "Supercalifragilisticexpialidociousandthensomemorewordswithoutspaces" * 2
        for n in range(6):
            server.post(edition="en", headline=f"{headline(n, mark)} {long if n == 2 else ''}")
            page.wait_for_timeout(2500)
        shift = handle.json_value()
        print(f"layout shift, {viewport['width']} px, motion {motion}: {shift:.4f}")
        assert shift <= 0.01, (shift, page.evaluate("window.shifts"))
        if motion == "reduce":
            link = page.locator("#bar .ticker-item.is-current .ticker-link")
            assert link.evaluate("(a) => getComputedStyle(a).overflowWrap") == "anywhere"


def test_on_a_phone_the_label_is_compact(
    browser: Browser, watch: PageWatch, site: tuple[NewsSite, Server]
) -> None:
    news, server = site
    server.post(edition="en", headline="Phones get the whole bar for the news")
    url = embed(news, server, "phone.html")
    with opened(browser, watch, url, viewport=PHONE) as page:
        for edition in ("en", "es"):
            page.evaluate(
                """(edition) => {
                    const host = document.createElement("div");
                    host.id = `view-${edition}`;
                    document.body.append(host);
                    Ticker.view(host, {edition});
                }""",
                edition,
            )
            view = page.locator(f"#view-{edition}")
            label = view.locator(".ticker-label").bounding_box()
            whole = view.bounding_box()
            assert label and whole and label["width"] / whole["width"] < 0.15, (label, whole)
            expect(view.locator(".ticker-word")).to_have_count(1)  # still named for readers


def contrast(page: Page, selector: str = "#bar") -> float:
    """The contrast of the headline text, dimmed by the track's opacity, on the bar."""
    return page.locator(selector).evaluate(
        """(bar) => {
            const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
            const lum = ([r, g, b]) => {
                const f = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
                return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            const track = bar.querySelector(".ticker-track");
            const text = bar.querySelector(".ticker-item .ticker-headline");
            const alpha = Number(getComputedStyle(track).opacity);
            const bg = rgb(getComputedStyle(bar).backgroundColor);
            const fg = rgb(getComputedStyle(text).color).slice(0, 3).map(
                (v, i) => alpha * v + (1 - alpha) * bg[i]);
            const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
            return (a + 0.05) / (b + 0.05);
        }"""
    )


def test_touch_taps_and_the_button_always_say_what_they_will_do(
    browser: Browser, watch: PageWatch, site: tuple[NewsSite, Server]
) -> None:
    news, server = site
    mark = f"touch{time.time_ns()}"
    for n in range(3):
        server.post(edition="en", headline=headline(n, mark))
    url = embed(news, server, "touch.html", 'data-max-items="3"')
    with opened(browser, watch, url, viewport=PHONE, has_touch=True, is_mobile=True) as page:
        bar = page.locator("#bar")
        toggle = bar.locator(".ticker-toggle")
        expect(toggle).to_have_accessible_name("Pause ticker")
        position = (
            "() => new DOMMatrixReadOnly(getComputedStyle("
            "document.querySelector('#bar .ticker-track')).transform).m41"
        )
        for label in ("Play ticker", "Pause ticker", "Play ticker"):
            bar.locator(".ticker-viewport").tap()
            expect(toggle).to_have_accessible_name(label)
        # Paused, as the button says. The compositor may still draw the frame already
        # under way when the tap lands, so the position is read two frames later.
        assert page.evaluate(
            "() => document.querySelector('#bar .ticker-run').getAnimations()"
            ".map((a) => a.playState)"
        ) == ["paused"]
        page.evaluate(
            "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        before = page.evaluate(position)
        page.wait_for_timeout(400)
        assert abs(page.evaluate(position) - before) < 0.5
        toggle.tap()
        expect(toggle).to_have_accessible_name("Pause ticker")
        page.wait_for_timeout(400)
        assert abs(page.evaluate(position) - before) > 5


def test_screen_readers_hear_bursts_and_corrections(
    browser: Browser, watch: PageWatch, site: tuple[NewsSite, Server]
) -> None:
    news, server = site
    mark = f"sr{time.time_ns()}"
    url = embed(news, server, "sr.html")
    with opened(browser, watch, url, viewport=DESKTOP) as page:
        live = page.locator("#bar .ticker-sr")
        flash = server.post(edition="en", urgency=1, headline=f"{mark} first")
        expect(live).to_contain_text(f"Flash: {mark} first")
        server.correct(flash["id"], headline=f"{mark} first, corrected")
        expect(live).to_contain_text(f"Corrected: {mark} first, corrected")
        said = page.evaluate(
            """() => {
                const host = document.createElement("div");
                document.body.append(host);
                const view = Ticker.view(host, {edition: "en"});
                const item = (h) => ({id: h, headline: h, urgency: 3});
                view.announce([item("a"), item("b"), item("c")]);
                return host.querySelector(".ticker-sr").textContent;
            }"""
        )
        assert said == "3 new alerts: a; b; c"


def test_pinned_items_lead_the_bar(browser: Browser, watch: PageWatch, tmp_path) -> None:
    """A ticker of its own: a pinned item would lead every other test's bar."""
    with (
        news_site(tmp_path / "site") as news,
        serve(tmp_path, TICKER_ALLOWED_ORIGINS=news.origin) as server,
    ):
        old = server.post(edition="en", headline=headline(0, "pin"))
        flash = server.post(edition="en", urgency=1, headline=headline(1, "pin"))
        url = embed(news, server, "pinned.html", 'data-max-items="3"')
        with opened(browser, watch, url, viewport=DESKTOP) as page:
            assert ids(page)[:2] == [flash["id"], old["id"]]
            server.correct(old["id"], pinned=True)
            expect(page.locator("#bar .ticker-item").first).to_have_attribute("data-id", old["id"])
            assert ids(page)[:2] == [old["id"], flash["id"]]
            expect(page.locator("#bar .ticker-item.ticker-pinned")).to_have_count(1)
            newer = server.post(edition="en", headline=headline(2, "pin"))
            expect(page.locator(f'#bar .ticker-item[data-id="{newer["id"]}"]')).to_have_count(1)
            assert ids(page) == [old["id"], flash["id"], newer["id"]]
            server.correct(old["id"], pinned=False)
            expect(page.locator("#bar .ticker-item").first).to_have_attribute(
                "data-id", flash["id"]
            )
            assert ids(page) == [flash["id"], newer["id"], old["id"]]
