"""The live page: server-rendered HTML that works without script, with LiveBlogPosting data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import extruct
import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack import Stack
from ticker import items, live_page
from ticker.config import Limits, Vocabulary
from ticker.feeds import FeedQuery

NOW = datetime(2026, 5, 7, 15, 42, tzinfo=UTC)
HOSTILE = 'Markets & <script>alert("x")</script> </script><b>bold</b>'


def make(**payload) -> items.Item:
    payload.setdefault("edition", "en")
    return items.create(payload, editor="amal", vocabulary=Vocabulary(), limits=Limits(), now=NOW)


def json_ld(html: str, url: str = "http://t.example/live/en") -> dict:
    """The page's JSON-LD, as a structured-data extractor (the kind search engines run) sees it."""
    found = extruct.extract(html, base_url=url, syntaxes=["json-ld"], uniform=True)["json-ld"]
    assert len(found) == 1, found
    return found[0]


def test_headlines_are_text_and_the_json_ld_cannot_end_its_script():
    hostile = make(headline=HOSTILE, source="A & B <i>", link="https://news.example/a?b=1&c=2")
    html = live_page.render(FeedQuery("en"), [hostile], base_url="http://t.example/", now=NOW)
    # Only the widget's script and the data block: no script element came from the headline.
    doc = lxml.html.fromstring(html)
    scripts = doc.xpath("//script")
    assert [s.get("src") or s.get("type") for s in scripts] == [
        "/static/widget.js",
        "application/ld+json",
    ]
    block = scripts[1].text
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block)["liveBlogUpdate"][0]["headline"] == HOSTILE
    assert doc.xpath("//b") == []
    line = doc.xpath("//li[@class='live-item']")[0]
    assert line.xpath(".//span[@class='live-headline']")[0].text_content() == HOSTILE
    assert line.xpath(".//span[@class='live-source']")[0].text_content() == "A & B <i>:"
    assert line.xpath(".//a/@href") == ["https://news.example/a?b=1&c=2"]
    assert f"{HOSTILE}" not in html  # never raw


@given(st.text())
def test_json_ld_text_round_trips_any_text(text):
    data = {"headline": text, "nested": [text]}
    encoded = live_page.json_ld_text(data)
    assert json.loads(encoded) == data
    assert not {"<", ">", "&", "\u2028", "\u2029"} & set(encoded)


def test_live_blog_structure():
    first = make(headline="First", link="https://news.example/1", source="Reuters")
    second = make(headline="Second")
    html = live_page.render(
        FeedQuery("en", "Europe"), [second, first], base_url="http://t.example/", now=NOW
    )
    data = json_ld(html)
    assert data["@context"].rstrip("/") in ("https://schema.org", "http://schema.org")
    assert data["@type"] == "LiveBlogPosting"
    assert data["url"] == "http://t.example/live/en?region=Europe"
    assert data["headline"] == "Breaking news · Europe" and data["inLanguage"] == "en"
    assert data["coverageStartTime"] == first.created
    updates = data["liveBlogUpdate"]
    assert [u["@type"] for u in updates] == ["BlogPosting", "BlogPosting"]
    assert [u["headline"] for u in updates] == ["Second", "First"]
    assert updates[1]["url"] == "https://news.example/1" and "url" not in updates[0]
    assert updates[1]["datePublished"] == first.created
    assert updates[1]["dateModified"] == first.updated
    assert updates[1]["sourceOrganization"]["name"] == "Reuters"


def test_an_empty_ticker_says_so_and_is_still_a_live_blog():
    html = live_page.render(FeedQuery("es"), [], base_url="http://t.example/", now=NOW)
    doc = lxml.html.fromstring(html)
    assert doc.xpath("//li[@class='live-empty']")[0].text == "No hay noticias de última hora"
    assert json_ld(html)["liveBlogUpdate"] == []


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


async def page(stack, edition: str, **params) -> lxml.html.HtmlElement:
    response = await stack.http.get(f"/live/{edition}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=15"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return lxml.html.fromstring(response.text)


async def test_the_page_without_script_shows_the_ticker(stack):
    """What a reader without JavaScript, or a crawler that runs none, gets: the HTML alone."""
    base = str(stack.http.base_url).rstrip("/")
    older = await stack.post(headline=HOSTILE, source="Desk")
    newer = await stack.post(headline="Flash: quake", urgency=1, link="https://news.example/q")
    doc = await page(stack, "en")
    html = doc.getroottree().getroot()
    assert (html.get("lang"), html.get("dir")) == ("en", "ltr")
    entries = doc.xpath("//ol[@class='live-items']/li")
    assert [li.get("id") for li in entries] == [newer["id"], older["id"]]
    assert [li.xpath(".//span[@class='live-headline']")[0].text_content() for li in entries] == [
        "Flash: quake",
        HOSTILE,
    ]
    assert entries[0].xpath(".//a/@href") == ["https://news.example/q"]
    assert entries[1].xpath(".//a") == []  # no link, no anchor
    assert entries[1].xpath(".//span[@class='live-source']")[0].text_content() == "Desk:"
    assert entries[0].xpath(".//time/@datetime") == [newer["created"]]
    # The widget's embed, as docs/widget.md describes it, enhances the page when script runs.
    assert doc.xpath("//script[@src='/static/widget.js']")[0].get("defer") is not None
    bar = doc.xpath("//*[@data-ticker]")[0]
    assert bar.get("data-edition") == "en"
    assert doc.xpath("//link[@rel='stylesheet']/@href") == [
        "/static/widget.css",
        "/static/live.css",
    ]
    assert (await stack.http.get("/static/live.css")).status_code == 200
    feeds = doc.xpath("//link[@rel='alternate']/@href")
    assert feeds == ["/feeds/en.rss", "/feeds/en.atom", "/feeds/en.json"]
    assert doc.xpath("//link[@rel='canonical']/@href") == [f"{base}/live/en"]

    response = await stack.http.get("/live/en")
    data = json_ld(response.text, f"{base}/live/en")
    assert data["@type"] == "LiveBlogPosting"
    assert [u["headline"] for u in data["liveBlogUpdate"]] == ["Flash: quake", HOSTILE]
    assert data["liveBlogUpdate"][0]["url"] == "https://news.example/q"


async def test_arabic_page_is_right_to_left(stack):
    headline = "الرئيس يكلّف السفير سيمون كرم برئاسة الوفد"
    await stack.post(edition="ar", headline=headline, regions=["MENA"])
    doc = await page(stack, "ar", region="mena")
    html = doc.getroottree().getroot()
    assert (html.get("lang"), html.get("dir")) == ("ar", "rtl")
    assert doc.xpath("//span[@class='live-headline']")[0].text_content() == headline
    bar = doc.xpath("//*[@data-ticker]")[0]
    assert (bar.get("data-edition"), bar.get("data-region")) == ("ar", "MENA")
    assert doc.xpath("//h1")[0].text.startswith("عاجل")
    assert doc.xpath("//time/@dir") == ["ltr"]  # the numeric date is not reordered


async def test_changes_show_and_errors_are_explained(stack):
    item = await stack.post(headline="Before")
    await stack.correct(item["id"], headline="After")
    doc = await page(stack, "en")
    assert [s.text_content() for s in doc.xpath("//span[@class='live-headline']")] == ["After"]
    await stack.withdraw(item["id"])
    doc = await page(stack, "en")
    assert doc.xpath("//span[@class='live-headline']") == []
    assert doc.xpath("//li[@class='live-empty']")

    for params, edition, status in (
        ({}, "xx", 404),
        ({"region": "Mars"}, "en", 400),
        ({"page": "2"}, "en", 400),
    ):
        response = await stack.http.get(f"/live/{edition}", params=params)
        assert response.status_code == status
        assert response.json()["message"]
