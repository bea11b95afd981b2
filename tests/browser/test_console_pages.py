"""The console's pages beside the desk, against a real `ticker serve`: the archive (search,
pages, posting an old item again), scheduled items (schedule, pin, edit, cancel, release),
an item's history (chiefs and admins; a plain refusal for editors) and tokens (admins:
create with the secret shown once and copied, rotate, revoke). Each page in Arabic and in
Spanish with no English left, axe-core clean, and driven by the keyboard."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from browserkit import (
    PageWatch,
    Server,
    english_left,
    free_port,
    serious,
    serve,
    serve_on_redis,
    watched_context,
)
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    """One token per kind of holder, besides the server's own editor."""
    return {
        "chief": server.make_token("chief-amal", "--role", "chief"),
        "admin": server.make_token("ops-lina", "--role", "admin"),
        "both": server.make_token("desk-head", "--role", "admin,chief"),
    }


def signed_in(context: BrowserContext, server: Server, token: str, name: str) -> Page:
    page = context.new_page()
    page.goto(f"{server.base}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who-name")).to_have_text(name)
    return page


def go(page: Page, route: str) -> None:
    page.evaluate("route => { location.hash = route; }", route)


def held_while_opening(page: Page, pattern: str, route: str) -> Route:
    """Open the console's `route` while requests matching `pattern` get no answer; the
    first such request, to be answered (`continue_()`) when the test chooses."""
    held: list[Route] = []
    page.route(pattern, lambda request: held.append(request))
    go(page, route)
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, f"{route} asked for nothing like {pattern}"
    return held[0]


def whoami(server: Server, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.base}/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


# --- roles ----------------------------------------------------------------------------------


def test_each_holder_sees_the_pages_of_its_roles(
    context: BrowserContext, server: Server, tokens: dict[str, str], watch: PageWatch
) -> None:
    watch.allow(r"status of 403")
    item = server.post(edition="en", headline=f"Roles {time.time_ns()}")
    page = signed_in(context, server, server.token, "browser-test")
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link")).to_have_text(["Desk", "Archive", "Scheduled"])
    expect(page.locator(f'#items li[data-id="{item["id"]}"] .history-link')).to_have_count(0)
    for route in ("#/tokens", "#/webhooks", f"#/history/{item['id']}"):
        go(page, route)
        expect(page.locator("#view-refused")).to_be_visible()
        expect(page.locator("#refused-text")).to_contain_text("Not allowed")
        expect(page.locator("#view-desk")).to_be_hidden()
    # An editor's history, asked for behind the console's back, is refused by the server.
    refused = server.api("GET", f"/api/audit?item={item['id']}")
    assert refused.status_code == 403

    admin = signed_in(context, server, tokens["admin"], "ops-lina")
    expect(admin.locator("#notice")).to_contain_text("it posts nothing")
    expect(admin.locator("#compose")).to_be_hidden()
    expect(admin.get_by_role("navigation", name="Pages").get_by_role("link")).to_have_text(
        ["Desk", "Archive", "Scheduled", "Tokens", "Webhooks"]
    )
    row = admin.locator(f'#items li[data-id="{item["id"]}"]')
    expect(row.locator("button.correct")).to_be_hidden()
    expect(row.locator(".history-link")).to_be_visible()


# --- the archive ----------------------------------------------------------------------------


def test_the_archive_searches_pages_and_posts_an_old_item_again(
    context: BrowserContext, server: Server
) -> None:
    mark = f"arch{time.time_ns()}"
    posted = [server.post(edition="es", headline=f"Noticia {n} {mark}") for n in range(23)]
    server.withdraw(posted[3]["id"])
    page = signed_in(context, server, server.token, "browser-test")
    page.get_by_role("link", name="Archive").click()
    expect(page.locator("#archive-title")).to_be_focused()
    page.select_option("#a-edition", "es")
    page.fill("#a-q", mark)
    page.get_by_role("button", name="Search").click()

    results = page.locator("#archive-results li")
    expect(results).to_have_count(20)
    expect(page.locator("#archive-summary")).to_have_text("Items on this page: 20, newest first.")
    expect(results.first).to_contain_text(f"Noticia 22 {mark}")
    expect(results.first.locator(".status")).to_have_text("Live")
    expect(results.first.locator(".item-text")).to_have_attribute("dir", "ltr")
    expect(page.locator("#archive-first")).to_be_hidden()
    page.get_by_role("button", name="Next page").click()
    expect(results).to_have_count(3)
    expect(page.locator("#archive-summary")).to_be_focused()
    expect(results.nth(0)).to_contain_text(f"Noticia 2 {mark}")
    expect(page.locator("#archive-next")).to_be_hidden()
    page.get_by_role("button", name="First page").click()
    expect(results).to_have_count(20)

    page.select_option("#a-status", "withdrawn")
    page.get_by_role("button", name="Search").click()
    expect(results).to_have_count(1)
    withdrawn = results.first
    expect(withdrawn.locator(".status")).to_have_text("Withdrawn")
    expect(withdrawn.locator(".item-meta")).to_contain_text("last changed by browser-test")
    page.fill("#a-editor", "nobody-posted-this")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#archive-summary")).to_have_text("Nothing found.")
    page.fill("#a-editor", "")
    page.get_by_role("button", name="Search").click()

    # One click posts the withdrawn item again, as a new item.
    results.first.get_by_role("button", name="Post again").click()
    expect(page.locator("#view-desk")).to_be_visible()
    expect(page.locator("#view-archive")).to_be_hidden()
    expect(page.locator("#f-headline")).to_have_value(f"Noticia 3 {mark}")
    expect(page.locator("#f-headline")).to_be_focused()
    expect(page.locator("#f-edition")).to_have_value("es")
    expect(page.locator("#notice")).to_contain_text("Filled in from the archive")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("Posted to Spanish (es)")
    live = server.api("GET", "/api/items?edition=es").json()["items"]
    again = [i for i in live if i["headline"] == f"Noticia 3 {mark}"]
    assert len(again) == 1 and again[0]["id"] != posted[3]["id"]


def test_a_late_answer_to_an_earlier_search_does_not_replace_the_latest(
    context: BrowserContext, server: Server
) -> None:
    mark = f"late{time.time_ns()}"
    server.post(edition="en", headline=f"English {mark}")
    server.post(edition="es", headline=f"Noticia {mark}")
    page = signed_in(context, server, server.token, "browser-test")
    # The page opens with a search of the first edition: its answer is held back.
    held = held_while_opening(page, "**/api/items?edition=en*", "#/archive")
    page.select_option("#a-edition", "es")
    page.fill("#a-q", mark)
    page.get_by_role("button", name="Search").click()
    results = page.locator("#archive-results")
    expect(results).to_contain_text(f"Noticia {mark}")
    held.continue_()  # the English answer now arrives, last
    page.wait_for_timeout(500)
    expect(results).to_contain_text(f"Noticia {mark}")
    expect(results).not_to_contain_text(f"English {mark}")
    expect(page.locator("#a-edition")).to_have_value("es")


def test_a_bad_archive_search_is_explained(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of 400")
    page = signed_in(context, server, server.token, "browser-test")
    go(page, "#/archive")
    page.fill("#a-from", "2026-05-02")
    page.fill("#a-to", "2026-05-01")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#archive-error")).to_contain_text("The search failed:")
    expect(page.locator("#archive-error")).to_contain_text("to")


# --- scheduled items ------------------------------------------------------------------------


def local_minutes_from_now(page: Page, minutes: int) -> str:
    """A datetime-local value on the browser's clock."""
    return page.evaluate(
        """m => {
            const d = new Date(Date.now() + m * 60000);
            const p = (n) => String(n).padStart(2, "0");
            const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
            return `${day}T${p(d.getHours())}:${p(d.getMinutes())}`;
        }""",
        minutes,
    )


def test_a_scheduled_item_is_pinned_edited_and_cancelled(
    context: BrowserContext, server: Server
) -> None:
    mark = f"sch{time.time_ns()}"
    page = signed_in(context, server, server.token, "browser-test")
    page.fill("#f-headline", f"Embargoed {mark}")
    page.fill("#f-publish_at", local_minutes_from_now(page, 120))
    page.check("#f-pinned")
    expect(page.locator("#h-publish_at")).to_contain_text("On your clock")
    page.click("#submit")
    expect(page.locator("#notice")).to_contain_text("Scheduled for English (en): goes live")
    waiting = server.api("GET", "/api/scheduled?edition=en").json()["items"]
    item = next(i for i in waiting if mark in i["headline"])
    assert item["pinned"] is True and item["status"] == "scheduled"
    assert mark not in str(server.api("GET", "/api/items?edition=en").json())

    page.get_by_role("link", name="Scheduled").click()
    row = page.locator("#scheduled-items li", has_text=mark)
    expect(row.locator(".publish-at")).to_contain_text("Goes live")
    expect(row.locator(".badge.pinned")).to_have_text("Pinned")
    row.get_by_role("button", name="Edit").click()
    expect(page.locator("#view-desk")).to_be_visible()
    expect(page.locator("#compose-title")).to_have_text(
        f"Edit scheduled “Embargoed {mark}” (version 1)"
    )
    expect(page.locator("#f-pinned")).to_be_checked()
    expect(page.locator("#f-publish_at")).to_be_visible()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(f"Embargo moved {mark}")
    page.fill("#f-publish_at", local_minutes_from_now(page, 180))
    page.click("#submit")
    expect(page.locator("#notice")).to_contain_text("Saved: goes live in English (en)")
    moved = server.api("GET", f"/api/items/{item['id']}")
    assert moved.status_code == 404  # still not live
    waiting = server.api("GET", "/api/scheduled?edition=en").json()["items"]
    again = next(i for i in waiting if i["id"] == item["id"])
    assert again["headline"] == f"Embargo moved {mark}" and again["publish_at"] > item["publish_at"]

    go(page, "#/scheduled")
    row = page.locator("#scheduled-items li", has_text=mark)
    expect(row).to_contain_text(f"Embargo moved {mark}")
    row.get_by_role("button", name="Cancel it").click()
    expect(page.locator("#confirm-title")).to_have_text("Cancel this scheduled item?")
    page.locator("#confirm-withdraw").click()
    expect(page.locator("#scheduled-notice")).to_contain_text("will not go live")
    expect(row).to_have_count(0)
    assert all(
        i["id"] != item["id"]
        for i in server.api("GET", "/api/scheduled?edition=en").json()["items"]
    )


def test_a_late_answer_for_another_edition_does_not_replace_the_scheduled_list(
    context: BrowserContext, server: Server
) -> None:
    mark = f"tabs{time.time_ns()}"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    server.post(edition="en", headline=f"English later {mark}", publish_at=later)
    server.post(edition="es", headline=f"Noticia luego {mark}", publish_at=later)
    page = signed_in(context, server, server.token, "browser-test")
    # The page opens on the first edition: its answer is held back.
    held = held_while_opening(page, "**/api/scheduled?edition=en*", "#/scheduled")
    page.locator("#scheduled-tabs button", has_text="(es)").click()
    items = page.locator("#scheduled-items")
    expect(items).to_contain_text(f"Noticia luego {mark}")
    held.continue_()  # the first edition's answer now arrives, last
    page.wait_for_timeout(500)
    expect(items).to_contain_text(f"Noticia luego {mark}")
    expect(items).not_to_contain_text(f"English later {mark}")


def test_the_scheduled_list_follows_an_item_going_live(
    context: BrowserContext, server: Server
) -> None:
    mark = f"rel{time.time_ns()}"
    page = signed_in(context, server, server.token, "browser-test")
    publish_at = page.evaluate("() => new Date(Date.now() + 4000).toISOString()")
    item = server.post(edition="ar", headline=f"خبر مجدول {mark}", publish_at=publish_at)
    go(page, "#/scheduled")
    page.locator("#scheduled-tabs button", has_text="(ar)").click()
    row = page.locator("#scheduled-items li", has_text=mark)
    expect(row).to_have_count(1)
    expect(row.locator(".item-text")).to_have_attribute("dir", "rtl")
    expect(row).to_have_count(0, timeout=10_000)  # it went live; the list followed
    live = server.api("GET", f"/api/items/{item['id']}").json()
    assert live["status"] == "live"


# --- history --------------------------------------------------------------------------------


def test_a_chief_reads_an_items_history_field_by_field(
    context: BrowserContext, server: Server, tokens: dict[str, str]
) -> None:
    mark = f"his{time.time_ns()}"
    item = server.post(edition="en", headline=f"Before {mark}", urgency=3)
    server.correct(item["id"], headline=f"After {mark}", urgency=2)
    page = signed_in(context, server, tokens["chief"], "chief-amal")
    page.select_option("#f-edition", "en")
    page.locator(f'#items li[data-id="{item["id"]}"]').get_by_role("link", name="History").click()
    expect(page.locator("#history-title")).to_be_focused()
    expect(page.locator("#history-item")).to_have_text(item["id"])
    entries = page.locator("#history-entries > li")
    expect(entries).to_have_count(2)
    newest = entries.first
    expect(newest.locator(".entry-action")).to_have_text("Corrected")
    expect(newest.locator(".entry-who")).to_have_text("by browser-test (Editor)")
    expect(newest.locator(".item-meta")).to_contain_text("from 127.0.0.1")
    expect(newest.locator(".item-meta")).to_contain_text("python-httpx")
    headline = newest.locator("tr", has=page.locator("th", has_text="Headline"))
    expect(headline.locator("td.before")).to_have_text(f"Before {mark}")
    expect(headline.locator("td.after")).to_have_text(f"After {mark}")
    urgency = newest.locator("tr", has=page.locator("th", has_text="Urgency"))
    expect(urgency.locator("td")).to_have_text(["3", "2"])
    expect(entries.nth(1).locator(".entry-action")).to_have_text("Posted")
    expect(page.locator("#history-more")).to_be_hidden()


# --- tokens ---------------------------------------------------------------------------------


def test_an_admin_creates_copies_rotates_and_revokes_a_token(
    browser: Browser, watch: PageWatch, server: Server, tokens: dict[str, str]
) -> None:
    watch.allow(r"status of 409")
    # The server's own token was used: its last use is on record before the page reads it.
    assert server.api("GET", "/api/whoami").status_code == 200
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for _ in range(50):
        listed = httpx.get(f"{server.base}/api/tokens", headers=admin, timeout=10).json()
        if next(t for t in listed["tokens"] if t["name"] == "browser-test")["last_used"]:
            break
        time.sleep(0.1)
    with watched_context(browser, watch) as context:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
        page = signed_in(context, server, tokens["admin"], "ops-lina")
        page.get_by_role("link", name="Tokens").click()
        expect(page.locator("#tokens-title")).to_be_focused()
        editor = page.locator('#tokens-list tr[data-name="browser-test"]')
        expect(editor.locator("td")).to_have_text(
            ["Editor", "All editions", "Never", re.compile(r"\d{4}"), re.compile("Rotate")]
        )

        name = f"desk-es-{time.time_ns() % 10**8}"
        page.fill("#t-name", name)
        page.locator('#t-editions input[value="es"]').check()
        page.select_option("#t-expires", "30d")
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.locator("#secret")).to_be_visible()
        expect(page.locator("#secret-title")).to_have_text(f"New token for {name}:")
        expect(page.locator("#secret-value")).to_be_focused()
        secret = page.locator("#secret-value").input_value()
        assert secret.startswith("tkr_")
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#secret-copied")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        answer = whoami(server, secret).json()
        assert answer["roles"] == ["editor"] and answer["editions"] == ["es"]
        row = page.locator(f'#tokens-list tr[data-name="{name}"]')
        expect(row.locator("td").nth(1)).to_have_text("Spanish (es)")
        page.get_by_role("button", name="Done").click()
        expect(page.locator("#secret")).to_be_hidden()
        assert secret not in page.content()

        # A name in use is refused next to the name.
        page.fill("#t-name", name)
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.locator("#te-name")).not_to_be_empty()
        expect(page.locator("#t-name")).to_be_focused()

        row.get_by_role("button", name=f"Rotate {name}").click()
        page.locator("#confirm-withdraw").click()
        expect(page.locator("#secret-title")).to_contain_text(f"New secret for {name}")
        rotated = page.locator("#secret-value").input_value()
        assert rotated != secret and rotated.startswith("tkr_")
        assert whoami(server, secret).status_code == 401
        assert whoami(server, rotated).status_code == 200

        row.get_by_role("button", name=f"Revoke {name}").click()
        expect(page.locator("#confirm-title")).to_have_text("Revoke this token?")
        page.locator("#confirm-withdraw").click()
        expect(row).to_have_count(0)
        assert whoami(server, rotated).status_code == 401


# --- every page in Arabic and Spanish, axe-clean and by keyboard ----------------------------

# Per language: the browser's locale, an item posted and then corrected, and one scheduled.
ITEMS = {
    "ar": ("ar", "خبر للسجل", "خبر للسجل بعد التصحيح", "خبر مجدول للاختبار"),
    "es": ("es-ES", "Noticia para el historial", "Noticia corregida", "Noticia programada"),
}
# Messages that read the same in English: `english_left` cannot tell them apart, so each is
# checked here to be the language's own word (Spanish says "editor", "roles" and keeps the
# loanwords "token" and "webhook"). One more, not reviewed, fails the test.
SAME_AS_ENGLISH = {"ar": set(), "es": {"Editor", "Roles", "Tokens", "Webhooks"}}


@pytest.fixture
def admin_chief_in(
    browser: Browser, watch: PageWatch, server: Server, tokens: dict[str, str], lang: str
) -> Iterator[tuple[Page, dict]]:
    """The console of an admin and chief whose browser speaks `lang`, and an item of that
    edition with a history."""
    locale, posted, corrected, _ = ITEMS[lang]
    item = server.post(edition=lang, headline=f"{posted} {time.time_ns()}", urgency=2)
    server.correct(item["id"], headline=corrected)
    with watched_context(browser, watch, locale=locale, bypass_csp=True) as context:
        yield signed_in(context, server, tokens["both"], "desk-head"), item


@pytest.mark.parametrize("lang", ["ar", "es"])
def test_every_page_has_no_english_left_and_is_axe_clean(
    admin_chief_in: tuple[Page, dict], server: Server, lang: str
) -> None:
    page, item = admin_chief_in
    _, _, corrected, scheduled = ITEMS[lang]
    assert page.evaluate("document.documentElement.lang") == lang
    catalogue = page.evaluate("ConsoleI18n.MESSAGES")
    same = {
        text
        for key, text in catalogue["en"].items()
        if catalogue[lang][key] == text and re.search(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", "", text))
    }
    assert same == SAME_AS_ENGLISH[lang]
    server.post(
        edition=lang,
        headline=scheduled,
        publish_at=page.evaluate("() => new Date(Date.now() + 3600000).toISOString()"),
        pinned=True,
    )
    direction = "rtl" if lang == "ar" else "ltr"
    checks = {
        "#/archive": "#archive-results li",
        "#/scheduled": "#scheduled-items li",
        f"#/history/{item['id']}": "#history-entries li",
        "#/webhooks": "#webhooks-empty, #webhooks-list tr",
        "#/tokens": "#tokens-list tr",  # last: its confirmation is checked below
    }
    for route, filled in checks.items():
        go(page, route)
        if route == "#/archive":
            page.select_option("#a-edition", lang)
            page.locator("#archive-form button[type=submit]").click()
            # This language's search's answer, not the English one the page opened with.
            expect(page.locator("#archive-results")).to_contain_text(corrected)
        if route == "#/scheduled":
            page.locator("#scheduled-tabs button", has_text=f"({lang})").click()
            expect(page.locator("#scheduled-items")).to_contain_text(scheduled)
        expect(page.locator(filled).first).to_be_visible()
        assert page.evaluate("document.documentElement.dir") == direction, route
        assert english_left(page, lang) == [], route
        assert serious(page) == [], route
    # The confirmation and a freshly shown secret too.
    page.locator("#tokens-list button.rotate").first.click()
    expect(page.locator("#confirm")).to_be_visible()
    assert english_left(page, lang) == []
    page.keyboard.press("Escape")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_is_axe_clean_in_english(
    browser: Browser, watch: PageWatch, server: Server, tokens: dict[str, str], scheme: str
) -> None:
    item = server.post(edition="en", headline=f"Axe {time.time_ns()}", urgency=1)
    server.correct(item["id"], headline="Axe, corrected")
    with watched_context(browser, watch, bypass_csp=True, color_scheme=scheme) as context:
        page = signed_in(context, server, tokens["both"], "desk-head")
        for route, filled in (
            ("#/archive", "#archive-results li"),
            ("#/scheduled", "#scheduled-items li, #scheduled-empty"),
            (f"#/history/{item['id']}", "#history-entries li"),
            ("#/tokens", "#tokens-list tr"),
            ("#/webhooks", "#webhooks-empty, #webhooks-list tr"),
        ):
            go(page, route)
            expect(page.locator(filled).first).to_be_visible()
            assert serious(page) == [], (scheme, route)


def test_the_pages_work_from_the_keyboard(
    context: BrowserContext, server: Server, tokens: dict[str, str]
) -> None:
    mark = f"key{time.time_ns()}"
    server.post(edition="en", headline=f"Keyboard archive {mark}")
    page = signed_in(context, server, tokens["both"], "desk-head")
    page.get_by_role("link", name="Archive").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#archive-title")).to_be_focused()
    for _ in range(2):  # edition, words
        page.keyboard.press("Tab")
    expect(page.locator("#a-q")).to_be_focused()
    page.keyboard.insert_text(mark)
    page.keyboard.press("Enter")
    results = page.locator("#archive-results li")
    expect(results).to_have_count(1)
    history = results.first.get_by_role("link", name="History")
    history.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#history-title")).to_be_focused()
    expect(page.locator("#history-entries li")).to_have_count(1)

    page.get_by_role("link", name="Tokens").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#tokens-title")).to_be_focused()
    page.locator("#t-name").focus()
    name = f"kb-{time.time_ns() % 10**8}"
    page.keyboard.insert_text(name)
    page.keyboard.press("Enter")
    expect(page.locator("#secret-value")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # Done
    expect(page.locator("#secret")).to_be_hidden()
    expect(page.locator("#t-name")).to_be_focused()
    revoke = page.get_by_role("button", name=f"Revoke {name}")
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    page.keyboard.press("Escape")  # keep it: the focus goes back
    expect(revoke).to_be_focused()
    # At once, before the dialog's close from Escape is announced: that late announcement
    # must not answer the new question.
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    confirm = page.locator("#confirm-withdraw")
    confirm.focus()
    expect(confirm).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator(f'#tokens-list tr[data-name="{name}"]')).to_have_count(0)


def tab_to(page: Page, target: Locator, most: int = 40) -> None:
    """Press Tab until `target` has the focus, as a keyboard user moves through a list."""
    for _ in range(most):
        if target.evaluate("e => e === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_the_scheduled_page_works_from_the_keyboard(
    context: BrowserContext, server: Server
) -> None:
    mark = f"kbs{time.time_ns()}"
    later = datetime.now(UTC) + timedelta(hours=2)
    dropped = server.post(
        edition="en", headline=f"Dropped embargo {mark}", publish_at=later.isoformat()
    )
    moved = server.post(
        edition="en",
        headline=f"Moved embargo {mark}",
        publish_at=(later + timedelta(hours=1)).isoformat(),
    )
    page = signed_in(context, server, server.token, "browser-test")
    page.get_by_role("link", name="Scheduled").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#scheduled-title")).to_be_focused()
    rows = page.locator("#scheduled-items li")
    row = rows.filter(has_text=dropped["headline"])
    expect(row).to_have_count(1)

    # Cancel: asked first; Escape keeps the item and gives the focus back.
    cancel = row.get_by_role("button", name="Cancel it")
    tab_to(page, cancel)
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Cancel this scheduled item?")
    expect(page.locator("#confirm-text")).to_have_text(dropped["headline"])
    keep = dialog.get_by_role("button", name="Keep it")
    expect(keep).to_be_focused()  # the safe answer is the one Enter gives
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(cancel).to_be_focused()
    waiting = server.api("GET", "/api/scheduled?edition=en").json()["items"]
    assert dropped["id"] in [i["id"] for i in waiting]

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(keep).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Cancel it")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    notice = page.locator("#scheduled-notice")
    expect(notice).to_be_focused()
    expect(notice).to_have_text(f"Cancelled: “{dropped['headline']}” will not go live.")
    expect(row).to_have_count(0)
    waiting = server.api("GET", "/api/scheduled?edition=en").json()["items"]
    assert dropped["id"] not in [i["id"] for i in waiting]
    assert dropped["id"] not in server.live_ids("en")

    # Edit: the form opens with the headline focused, ready for the new words; Enter saves.
    edit = rows.filter(has_text=moved["headline"]).get_by_role("button", name="Edit")
    tab_to(page, edit)
    page.keyboard.press("Enter")
    expect(page.locator("#view-desk")).to_be_visible()
    expect(page.locator("#view-scheduled")).to_be_hidden()
    expect(page.locator("#compose-title")).to_have_text(
        f"Edit scheduled “{moved['headline']}” (version 1)"
    )
    expect(page.locator("#f-headline")).to_be_focused()
    expect(page.locator("#f-headline")).to_have_value(moved["headline"])
    expect(page.locator("#f-publish_at")).to_be_visible()
    expect(page.locator("#f-publish_at")).not_to_have_value("")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(f"Embargo moved by keyboard {mark}")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_be_focused()
    expect(page.locator("#notice")).to_contain_text("Saved: goes live in English (en)")
    waiting = server.api("GET", "/api/scheduled?edition=en").json()["items"]
    saved = next(i for i in waiting if i["id"] == moved["id"])
    assert saved["headline"] == f"Embargo moved by keyboard {mark}"
    assert saved["status"] == "scheduled" and saved["publish_at"] == moved["publish_at"]


def test_the_form_keeps_to_the_scope_the_expiry_chosen_and_the_pin_limit(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of 409")
    scoped = server.make_token(f"es-desk-{time.time_ns() % 10**8}", "--editions", "es")
    name = whoami(server, scoped).json()["name"]
    page = signed_in(context, server, scoped, name)
    expect(page.locator("#f-edition")).to_have_value("es")
    for other in ("en", "ar"):
        expect(page.locator(f'#f-edition option[value="{other}"]')).to_be_disabled()

    mark = f"exp{time.time_ns()}"
    page.fill("#f-headline", f"Default expiry {mark}")
    expect(page.locator("#f-expires")).to_have_value("default")
    page.click("#submit")
    expect(page.locator("#notice")).to_contain_text("Posted to Spanish (es)")
    page.fill("#f-headline", f"Never expires {mark}")
    page.select_option("#f-expires", "")
    page.click("#submit")
    expect(page.locator("#notice")).to_contain_text("Posted to Spanish (es)")
    live = {i["headline"]: i for i in server.api("GET", "/api/items?edition=es").json()["items"]}
    assert live[f"Default expiry {mark}"]["expires"] is not None
    assert live[f"Never expires {mark}"]["expires"] is None

    limit = server.api("GET", "/api/config").json()["limits"]["pinned_items"]
    pins = [
        server.post(edition="es", headline=f"Pin {n} {mark}", pinned=True) for n in range(limit)
    ]
    try:
        page.fill("#f-headline", f"One pin too many {mark}")
        page.check("#f-pinned")
        page.click("#submit")
        expect(page.locator("#e-pinned")).to_contain_text(f"at most {limit}")
        expect(page.locator("#f-pinned")).to_be_focused()
    finally:
        for pin in pins:
            server.withdraw(pin["id"])


def test_the_pages_read_the_same_on_redis(
    browser: Browser, watch: PageWatch, redis_url: str, tmp_path: Path
) -> None:
    """The same pages on `ticker publisher` and `ticker hub` sharing a real Redis."""
    with (
        serve_on_redis(tmp_path, redis_url) as (server, _hub),
        watched_context(browser, watch) as context,
    ):
        head = server.make_token("desk-head", "--role", "admin,chief")
        gone = server.post(edition="en", headline="Pulled from the ticker")
        server.correct(gone["id"], headline="Pulled from the ticker, corrected")
        server.withdraw(gone["id"])
        publish_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        server.post(edition="en", headline="Embargoed on Redis", publish_at=publish_at)
        page = signed_in(context, server, head, "desk-head")

        go(page, "#/archive")
        row = page.locator("#archive-results li", has_text="Pulled from the ticker")
        expect(row.locator(".status")).to_have_text("Withdrawn")
        row.get_by_role("link", name="History").click()
        entries = page.locator("#history-entries > li .entry-action")
        expect(entries).to_have_text(["Withdrawn", "Corrected", "Posted"])

        go(page, "#/scheduled")
        expect(page.locator("#scheduled-items li")).to_contain_text(["Embargoed on Redis"])

        go(page, "#/tokens")
        page.fill("#t-name", "redis-desk")
        page.get_by_role("button", name="Create", exact=True).click()
        secret = page.locator("#secret-value")
        expect(secret).to_have_value(re.compile(r"^tkr_"))
        assert whoami(server, secret.input_value()).json()["name"] == "redis-desk"
        expect(page.locator('#tokens-list tr[data-name="redis-desk"]')).to_have_count(1)


# --- webhooks -------------------------------------------------------------------------------


def test_an_admin_sees_why_a_webhook_was_disabled_and_enables_it(
    browser: Browser, watch: PageWatch, tmp_path: Path
) -> None:
    failing = {
        "TICKER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1",
        "TICKER_WEBHOOK_DISABLE_AFTER": "2",
        "TICKER_WEBHOOK_RETRY_BASE": "0.05",
        "TICKER_WEBHOOK_RETRY_MAX_DELAY": "0.1",
        "TICKER_WEBHOOK_CONNECT_TIMEOUT": "0.5",
        "TICKER_WEBHOOK_TIMEOUT": "1",
    }
    with serve(tmp_path, **failing) as server:
        admin = server.make_token("ops-hooks", "--role", "admin")
        # Nothing listens there: every attempt fails, and after two the webhook is disabled.
        url = f"http://127.0.0.1:{free_port()}/in"
        created = httpx.post(
            f"{server.base}/api/webhooks",
            json={"url": url, "filters": {"edition": "en"}},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        server.post(edition="en", headline="For the partner")
        with watched_context(browser, watch, bypass_csp=True) as context:  # axe is injected
            page = signed_in(context, server, admin, "ops-hooks")
            row = page.locator(f'#webhooks-list tr[data-id="{created.json()["id"]}"]')
            for _ in range(100):  # until the worker gives up on it
                page.get_by_role("link", name="Webhooks").click()
                expect(page.locator("#webhooks-title")).to_be_focused()
                expect(row).to_have_count(1)
                if "Disabled" in row.locator("td").nth(2).inner_text():
                    break
                go(page, "#/")
                time.sleep(0.1)
            cells = row.locator("td")
            expect(row.locator("th")).to_have_text(url)
            expect(cells.nth(0)).to_have_text("English (en)")
            expect(cells.nth(1)).to_have_text("1")  # the item still waits for it
            expect(cells.nth(2)).to_have_text(re.compile(r"^Disabled: 2 failed attempts in a row"))
            assert serious(page) == []
            row.get_by_role("button", name=f"Enable {url}").click()
            expect(cells.nth(2)).to_have_text("Delivering")
            expect(row.get_by_role("button")).to_have_count(0)
            expect(page.locator("#webhooks-title")).to_be_focused()
        trail = httpx.get(
            f"{server.base}/api/audit",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        ).json()["entries"]
        # Oldest first; once enabled, the receiver still fails, so it may be disabled again.
        actions = [e["action"] for e in reversed(trail) if e["action"].startswith("webhook.")]
        assert actions[:3] == ["webhook.created", "webhook.disabled", "webhook.enabled"]
