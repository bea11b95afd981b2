"""The console in English, Arabic and Spanish: one catalogue with the same keys in each, no
English left on an Arabic or Spanish screen, the whole layout mirrored right to left in
Arabic, dates in the chosen language, the choice remembered, axe-core clean and keyboard
operable in every language."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from browserkit import ROOT, PageWatch, Server, english_left, serious, watched_context
from playwright.sync_api import Browser, BrowserContext, Page, expect

LANGUAGES = ("en", "ar", "es")
LOCALES = {"en": "en-GB", "ar": "ar", "es": "es-ES"}
SIGNED_IN = {"en": "Signed in as", "ar": "تم تسجيل الدخول باسم", "es": "Sesión iniciada como"}


@pytest.fixture
def desk_in(browser: Browser, watch: PageWatch) -> Iterator[Callable[..., BrowserContext]]:
    """Browser contexts whose browser speaks `locale`, as an editor's would; all closed
    (and checked for console errors) at the end of the test."""
    with contextlib.ExitStack() as stack:

        def make(locale: str, **options: Any) -> BrowserContext:
            return stack.enter_context(watched_context(browser, watch, locale=locale, **options))

        yield make


def console(context: BrowserContext, server: Server, *, sign_in: bool = True) -> Page:
    page = context.new_page()
    page.goto(f"{server.base}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    if sign_in:
        page.fill("#token", server.token)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#who-name")).to_have_text("browser-test")
    return page


def box(page: Page, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


# --- the catalogue ------------------------------------------------------------------------


def test_every_language_has_every_message_with_the_same_blanks(
    context: BrowserContext, server: Server
) -> None:
    page = console(context, server, sign_in=False)
    catalogue = page.evaluate("ConsoleI18n.MESSAGES")
    assert set(catalogue) == set(LANGUAGES)
    keys = set(catalogue["en"])
    assert len(keys) > 100
    for lang in LANGUAGES:
        assert set(catalogue[lang]) == keys, (lang, keys ^ set(catalogue[lang]))
        for key, text in catalogue[lang].items():
            assert text.strip(), (lang, key)
            blanks = sorted(re.findall(r"\{\w+\}", text))
            assert blanks == sorted(re.findall(r"\{\w+\}", catalogue["en"][key])), (lang, key)
    # Every key the page names is in the catalogue.
    named = page.evaluate(
        """() => [...document.querySelectorAll('[data-i18n]')].map(e => e.dataset.i18n)
            .concat([...document.querySelectorAll('[data-i18n-placeholder]')]
                .map(e => e.dataset.i18nPlaceholder))
            .concat([...document.querySelectorAll('[data-i18n-aria-label]')]
                .map(e => e.dataset.i18nAriaLabel))"""
    )
    assert named and set(named) <= keys, set(named) - keys


class _Words(HTMLParser):
    """Text in console.html that no message key covers."""

    # Not words of the console: the product's name, a command to type, the language names
    # each written in its own language, and the signed-in editor's name.
    EXEMPT = {"code", "b", "option:lang", "p:brand"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool, str]] = []
        self.loose: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        keyed = "data-i18n" in a
        where = f"{tag}:{a.get('class') or ''}"
        if tag == "option" and self.stack and self.stack[-1][2] == "select:lang":
            where = "option:lang"
        if tag == "select":
            where = f"select:{a.get('id')}"
        if tag not in ("meta", "link", "input", "br"):
            self.stack.append((tag, keyed, where))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if not data.strip() or not self.stack or self.stack[-1][0] in ("script", "style"):
            return
        tag, keyed, where = self.stack[-1]
        if keyed or tag in self.EXEMPT or where in self.EXEMPT:
            return
        self.loose.append(data.strip())


def test_the_page_has_no_words_outside_the_catalogue() -> None:
    html = (ROOT / "web" / "console.html").read_text("utf-8")
    words = _Words()
    words.feed(html)
    # The brand's first word is the product's name; its second part is keyed.
    assert [w for w in words.loose if w != "ticker"] == []
    for attribute in ("placeholder", "aria-label", "title"):
        for match in re.finditer(rf'{attribute}="([^"]*)"', html):
            if attribute == "placeholder" and match.group(1) == "https://":
                continue
            tag = html[html.rfind("<", 0, match.start()) : html.find(">", match.end())]
            assert f"data-i18n-{attribute}=" in tag, tag


# --- every language on screen -------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ar", "es"])
def test_no_english_is_left_on_screen(desk_in, server: Server, watch: PageWatch, lang: str) -> None:
    watch.allow(r"status of 401")
    context = desk_in({"ar": "ar-EG", "es": "es-MX"}[lang])
    page = console(context, server, sign_in=False)
    assert page.evaluate("document.documentElement.lang") == lang
    assert english_left(page, lang) == []
    page.fill("#token", "tkr_not-a-real-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#token-error")).not_to_be_empty()
    assert english_left(page, lang) == []

    page.fill("#token", server.token)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text(SIGNED_IN[lang])
    mark = f"{lang}{time.time_ns()}"
    page.select_option("#f-edition", "ar")
    page.select_option("#f-urgency", "1")
    page.select_option("#f-expires", "3600")
    page.locator("#tags summary").click()
    page.locator("#f-regions input").first.check()
    page.fill("#f-headline", f"خبر للاختبار {mark}")
    assert english_left(page, lang) == []
    page.click("#submit")
    row = page.locator("#items li", has_text=mark)
    expect(row.locator(".badge")).to_be_visible()
    expect(page.locator("#notice button")).to_have_count(3)
    assert english_left(page, lang) == []

    row.locator("button.correct").click()
    expect(page.locator("#cancel")).to_be_visible()
    assert english_left(page, lang) == []
    page.click("#cancel")
    row.locator("button.withdraw").click()
    expect(page.locator("#confirm")).to_be_visible()
    assert english_left(page, lang) == []
    page.click("#confirm-withdraw")
    expect(row).to_have_count(0)
    expect(page.locator("#notice button")).to_have_count(1)  # post it again
    assert english_left(page, lang) == []


def test_switching_language_redraws_what_the_console_wrote(
    context: BrowserContext, server: Server
) -> None:
    mark = f"sw{time.time_ns()}"
    server.post(edition="en", urgency=2, headline=f"Switching {mark}", expires_in=3600)
    page = console(context, server)
    row = page.locator("#items li", has_text=mark)
    expect(row.locator(".badge")).to_have_text("Bulletin")
    row.locator("button.correct").click()
    expect(page.locator("#compose-title")).to_contain_text("(version 1)")
    page.select_option("#lang", "ar")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(row.locator(".badge")).to_have_text("عاجل")
    expect(row.locator(".item-meta")).to_contain_text("النسخة 1")
    expect(page.locator("#compose-title")).to_have_text(f"تصحيح «Switching {mark}» (النسخة 1)")
    expect(page.locator("#submit")).to_have_text("حفظ التصحيح")
    expect(page.locator("#tabs button[aria-pressed=true]")).to_have_text(re.compile(r"\(en\)$"))
    assert english_left(page, "ar") == []
    page.select_option("#lang", "en")
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    expect(page.locator("#submit")).to_have_text("Save correction")
    expect(row.locator(".badge")).to_have_text("Bulletin")


# --- direction, dates and the choice ------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_layout_is_mirrored_in_arabic_only(desk_in, server: Server, lang: str) -> None:
    context = desk_in({"en": "en-US", "ar": "ar", "es": "es"}[lang])
    page = console(context, server)
    rtl = lang == "ar"
    assert page.evaluate("getComputedStyle(document.body).direction") == ("rtl" if rtl else "ltr")
    edition, urgency = box(page, '[data-field="edition"]'), box(page, '[data-field="urgency"]')
    compose, live = box(page, "#compose"), box(page, "#live")
    brand, demo = box(page, ".brand"), box(page, '.topbar a[href="/demo"]')
    # The compose panel's first column is on the right in Arabic, on the left otherwise.
    assert (edition["x"] > urgency["x"]) is rtl, (edition, urgency)
    assert (compose["x"] > live["x"]) is rtl, (compose, live)
    assert (brand["x"] > demo["x"]) is rtl, (brand, demo)
    # Labels start where the reading starts.
    label = box(page, 'label[for="f-headline"]')
    field = box(page, "#f-headline")
    if rtl:
        assert abs(field["x"] + field["width"] - label["x"] - label["width"]) < 2, (label, field)
    else:
        assert abs(label["x"] - field["x"]) < 2, (label, field)
    # A character count sits at the end of its field: its text, not its block.
    count = page.locator("#c-headline").evaluate(
        """e => { const r = document.createRange(); r.selectNodeContents(e);
                  return r.getBoundingClientRect().left; }"""
    )
    assert (count < field["x"] + field["width"] / 2) is rtl, (count, field)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_times_are_written_in_the_chosen_language(desk_in, server: Server, lang: str) -> None:
    item = server.post(edition="es", headline=f"Hora {time.time_ns()}", expires_in=7200)
    context = desk_in({"en": "en-US", "ar": "ar-SA", "es": "es-AR"}[lang])
    page = console(context, server)
    page.select_option("#f-edition", "es")
    meta = page.locator(f'#items li[data-id="{item["id"]}"] .item-meta')
    expect(meta).to_be_visible()
    expected = page.evaluate(
        """([locale, updated, expires]) => {
            const f = new Intl.DateTimeFormat(locale, {hour: "2-digit", minute: "2-digit",
                second: "2-digit", hourCycle: "h23", timeZoneName: "short"});
            return [f.format(new Date(updated)), f.format(new Date(expires))];
        }""",
        [LOCALES[lang], item["updated"], item["expires"]],
    )
    for text in expected:
        expect(meta).to_contain_text(text)
    expect(meta).not_to_have_text(re.compile(r"AM|PM|a\. ?m\.|p\. ?m\.|ص|م\b"))


def test_the_language_follows_the_browser_and_then_the_editor(desk_in, server: Server) -> None:
    for locale, lang in (("es-MX", "es"), ("ar-EG", "ar"), ("fr-FR", "en"), ("en-US", "en")):
        page = console(desk_in(locale), server, sign_in=False)
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("#lang")).to_have_value(lang)
    page = console(desk_in("fr-FR"), server, sign_in=False)
    page.select_option("#lang", "es")
    expect(page.locator("#sign-in-title")).to_have_text("Iniciar sesión")
    assert page.evaluate("localStorage.getItem('ticker.console.lang')") == "es"
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("#sign-in-title")).to_have_text("Iniciar sesión")
    expect(page).to_have_title("ticker: consola de la redacción")


# --- accessibility and the keyboard -------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_axe_finds_nothing_serious_in_each_language(
    desk_in, server: Server, watch: PageWatch, lang: str
) -> None:
    server.post(edition="ar", urgency=1, headline="خبر عاجل لفحص الإتاحة")
    server.post(edition="en", headline="An item for the axe", link="https://example.org/x")
    for scheme in ("light", "dark"):
        context = desk_in(lang, bypass_csp=True, color_scheme=scheme)
        page = console(context, server)
        page.select_option("#f-edition", "ar")
        expect(page.locator("#items li")).not_to_have_count(0)
        assert serious(page) == [], (lang, scheme)
        page.locator("#items li button.correct").first.click()
        assert serious(page) == [], (lang, scheme, "correcting")


# What each desk reads after signing in, posting to the English edition, and undoing.
KEYBOARD = {
    "ar": (
        1,
        "rtl",
        "تم تسجيل الدخول باسم",
        "نُشر في الإنجليزية (en)",
        "عاجل جداً",
        "تراجع",
        "تم التراجع",
    ),
    "es": (
        2,
        "ltr",
        "Sesión iniciada como",
        "Publicada en inglés (en)",
        "Última hora",
        "Deshacer",
        "Deshecho",
    ),
}


@pytest.mark.parametrize("lang", ["ar", "es"])
def test_a_desk_chooses_its_language_posts_a_flash_and_undoes_it_by_keyboard(
    desk_in, server: Server, lang: str
) -> None:
    downs, direction, signed, posted, flash, undo, undone = KEYBOARD[lang]
    page = console(desk_in("en-US"), server, sign_in=False)
    page.locator("#lang").focus()
    for _ in range(downs):  # English -> العربية -> Español
        page.keyboard.press("ArrowDown")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("html")).to_have_attribute("dir", direction)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the demo link, into the token field
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.insert_text(server.token)
    page.keyboard.press("Enter")
    notice = page.locator("#notice")
    expect(notice).to_be_focused()
    expect(notice).to_contain_text(f"{signed} browser-test")

    mark = f"kb{time.time_ns()}"
    for key in ["Tab", "Tab", "1", "Tab", "Tab"]:  # edition, urgency: Flash, source, headline
        page.keyboard.press(key)
    expect(page.locator("#f-headline")).to_be_focused()
    page.keyboard.insert_text(f"عاجل من لوحة المفاتيح {mark}")
    page.keyboard.press("Enter")
    expect(notice).to_be_focused()
    expect(notice).to_contain_text(posted)
    row = page.locator("#items li", has_text=mark)
    expect(row.locator(".badge")).to_have_text(flash)
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(notice.get_by_role("button", name=undo)).to_be_focused()
    page.keyboard.press("Enter")
    expect(notice).to_contain_text(undone)
    expect(row).to_have_count(0)
