"""The console for an editor under time pressure, driven by key presses: sign in, post a
flash in a handful of keys, undo it, correct through a conflict, read times and names."""

from __future__ import annotations

import re
import time

from browserkit import PageWatch, Server
from playwright.sync_api import BrowserContext, Page, expect


def signed_in(context: BrowserContext, server: Server) -> Page:
    page = context.new_page()
    page.goto(f"{server.base}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.locator("#token").focus()
    page.keyboard.insert_text(server.token)
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_be_focused()
    expect(page.locator("#notice")).to_contain_text("Signed in as browser-test")
    return page


def test_a_flash_by_keyboard_then_undo(context: BrowserContext, server: Server) -> None:
    page = signed_in(context, server)
    mark = f"kb{time.time_ns()}"
    keys = ["Tab", "Tab", "1", "Tab", "Tab"]  # edition, urgency: Flash, source, headline
    for key in keys:
        page.keyboard.press(key)
    expect(page.locator("#f-headline")).to_be_focused()
    page.keyboard.insert_text(f"Flash by keyboard {mark}")
    page.keyboard.press("Enter")
    keys.append("Enter")
    assert len(keys) <= 8  # was 26

    notice = page.locator("#notice")
    expect(notice).to_be_focused()
    expect(notice).to_contain_text("Posted to English (en)")
    row = page.locator("#items li", has_text=mark)
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("Flash")
    expect(row.locator(".item-meta")).to_have_text(re.compile(r"version 1 · \d\d:\d\d:\d\d \S+ by"))
    expect(row.locator(".item-meta")).not_to_have_text(re.compile(r"AM|PM"))
    for name in ("Correct", "Withdraw", "Undo"):
        expect(notice.get_by_role("button", name=name)).to_be_visible()

    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(notice.get_by_role("button", name="Undo")).to_be_focused()
    page.keyboard.press("Enter")
    expect(notice).to_contain_text("Undone")
    expect(notice).to_be_focused()
    expect(row).to_have_count(0)


def test_a_headline_is_one_line(context: BrowserContext, server: Server) -> None:
    page = signed_in(context, server)
    headline = page.locator("#f-headline")
    headline.focus()
    page.keyboard.insert_text("First line\nsecond line")
    expect(headline).to_have_value("First line second line")
    page.keyboard.press("Shift+Enter")
    expect(headline).to_have_value("First line second line")
    expect(page.get_by_text("Regions and categories")).to_be_visible()
    expect(page.locator("#f-regions input").first).to_be_hidden()  # folded away


def test_correct_through_a_conflict_and_names_that_match(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of (409|422)")  # the stale correction, refused
    mark = f"cf{time.time_ns()}"
    item = server.post(edition="en", headline=f"Before {mark}")
    page = signed_in(context, server)
    row = page.locator("#items li", has_text=mark)
    row.get_by_role("button", name="Correct").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#compose-title")).to_have_text(f"Correct “Before {mark}” (version 1)")
    server.correct(item["id"], headline=f"Theirs {mark}")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(f"Mine {mark}")
    page.keyboard.press("Enter")
    errors = page.locator("#form-error p")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text("Someone else corrected this item")
    load = page.get_by_role("button", name="Load the current version")
    expect(load).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#f-headline")).to_have_value(f"Theirs {mark}")
    expect(page.locator("#compose-title")).to_have_text(f"Correct “Theirs {mark}” (version 2)")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(f"Mine {mark}")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#notice")).to_be_focused()
    expect(page.locator("#notice")).to_contain_text("Corrected: version 3")

    # Urgency names agree with the bar: 3 is plain there, and plain here.
    expect(page.locator('#f-urgency option[value="3"]')).to_have_text(re.compile("Plain"))
    preview = page.locator("#preview")
    expect(preview.locator(".ticker-flag")).to_have_count(0)
    page.select_option("#f-urgency", "1")
    expect(preview.locator(".ticker-flag")).to_have_text("Flash")


def test_the_edition_switches_the_list_and_a_failed_post_clears_when_back_online(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"net::ERR_(FAILED|INTERNET_DISCONNECTED)")
    watch.allow(r"WebSocket connection to .* failed")
    page = signed_in(context, server)
    edition = page.locator("#f-edition")
    edition.focus()
    page.keyboard.press("s")  # Spanish (es)
    expect(edition).to_have_value("es")
    expect(page.locator("#tabs button[aria-pressed=true]")).to_have_text("Spanish (es)")
    page.select_option("#f-edition", "en")

    page.route("**/api/items", lambda route: route.abort())
    page.locator("#f-headline").fill("Posted while offline")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#form-error")).to_contain_text("press Post again", timeout=10_000)
    page.unroute("**/api/items")
    context.set_offline(True)
    page.wait_for_timeout(300)
    context.set_offline(False)
    expect(page.locator("#form-error")).to_be_empty()


def test_errors_name_characters_in_words(
    context: BrowserContext, server: Server, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")
    page = signed_in(context, server)
    page.locator("#f-headline").focus()
    page.keyboard.insert_text("Hidden \u202econtrol")
    page.keyboard.press("Enter")
    error = page.locator("#e-headline")
    expect(error).to_contain_text("right-to-left override")
    expect(page.locator("#f-headline")).to_be_focused()
