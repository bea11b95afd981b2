"""RSS 2.0, Atom 1.0 and JSON Feed 1.1, read back by feedparser, a real feed reader."""

from __future__ import annotations

import asyncio
import calendar
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import feedparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from stack import Stack
from ticker import feeds, items
from ticker.config import Limits, Vocabulary
from ticker.events import Cursor

NOW = datetime(2026, 5, 7, 15, 42, tzinfo=UTC)
VOCAB = Vocabulary()


def make(now: datetime = NOW, **payload) -> items.Item:
    payload.setdefault("edition", "en")
    return items.create(payload, editor="amal", vocabulary=VOCAB, limits=Limits(), now=now)


def epoch(stamp: str) -> int:
    return int(items.parse_time(stamp).timestamp())


# --- requests ------------------------------------------------------------------------------


def test_query_rules_match_the_api():
    assert feeds.parse_query("ar", [("region", "palestine")], VOCAB) == feeds.FeedQuery(
        "ar", "Palestine"
    )
    assert feeds.parse_query("en", [("category", "")], VOCAB) == feeds.FeedQuery("en")
    cases = [
        ("xx", [], 404, "editions are en, ar, es"),
        ("en", [("region", "Mars")], 400, "region 'Mars' is not known"),
        ("en", [("category", "Gossip")], 400, "category 'Gossip' is not known"),
        ("en", [("edition", "ar")], 400, "unknown parameter 'edition'"),
        ("en", [("since", "a:1")], 400, "unknown parameter 'since'"),
        ("en", [("region", "Asia"), ("region", "Europe")], 400, "region may be given once"),
    ]
    for edition, params, status, reason in cases:
        with pytest.raises(feeds.FeedRequestError) as exc:
            feeds.parse_query(edition, params, VOCAB)
        assert (exc.value.status, reason in exc.value.reason) == (status, True), exc.value.reason


def test_select_keeps_the_newest_live_matching_items():
    many = [make(NOW + timedelta(seconds=i), headline=f"n{i}").to_dict() for i in range(60)]
    chosen = feeds.select(many, feeds.FeedQuery("en"), NOW)
    assert len(chosen) == feeds.FEED_MAX == 50
    assert [i.headline for i in chosen[:2]] == ["n59", "n58"] and chosen[-1].headline == "n10"

    europe = make(headline="e", regions=["Europe"], categories=["Politics"])
    due = make(headline="due", expires_in=60)
    gone = items.withdraw(make(headline="gone"), editor="x")
    live = [europe.to_dict(), due.to_dict(), gone.to_dict()]
    assert [i.headline for i in feeds.select(live, feeds.FeedQuery("en"), NOW)] == ["e", "due"]
    later = NOW + timedelta(seconds=61)  # past its expiry, before the sweeper's event
    assert [i.headline for i in feeds.select(live, feeds.FeedQuery("en"), later)] == ["e"]
    politics = feeds.FeedQuery("en", "Europe", "Politics")
    assert [i.headline for i in feeds.select(live, politics, NOW)] == ["e"]
    assert feeds.select(live, feeds.FeedQuery("en", "Asia"), NOW) == []


# --- conditional GET -------------------------------------------------------------------------


def test_last_modified_is_the_first_sighting_of_a_cursor():
    fresh = feeds.Freshness()
    assert fresh.since("en", Cursor("a", 3), 100.5) == 100.5
    assert fresh.since("en", Cursor("a", 3), 140.0) == 100.5  # same state, same date
    assert fresh.since("en", Cursor("a", 2), 150.0) is None  # a stale read gets no date
    assert fresh.since("en", Cursor("a", 4), 160.0) == 160.0
    assert fresh.since("en", Cursor("b", 1), 170.0) == 170.0  # a new epoch is a new log
    assert fresh.since("ar", Cursor("a", 4), 180.0) == 180.0


def test_not_modified_follows_rfc_9110():
    tag = 'W/"abc"'
    stamp = datetime(2026, 5, 7, 15, 0, tzinfo=UTC)
    http_date = format_datetime(stamp, usegmt=True)
    assert feeds.not_modified({"if-none-match": 'W/"abc"'}, tag, None)
    assert feeds.not_modified({"if-none-match": '"x", "abc"'}, tag, None)  # weak comparison
    assert feeds.not_modified({"if-none-match": "*"}, tag, None)
    assert not feeds.not_modified({"if-none-match": '"x"'}, tag, stamp)
    # If-None-Match wins over If-Modified-Since.
    assert not feeds.not_modified(
        {"if-none-match": '"x"', "if-modified-since": http_date}, tag, stamp
    )
    assert feeds.not_modified({"if-modified-since": http_date}, tag, stamp)
    assert not feeds.not_modified(
        {"if-modified-since": http_date}, tag, stamp + timedelta(seconds=1)
    )
    assert not feeds.not_modified({"if-modified-since": "yesterday"}, tag, stamp)
    assert not feeds.not_modified({"if-modified-since": http_date}, tag, None)
    assert not feeds.not_modified({}, tag, stamp)


def test_etag_depends_on_cursor_filters_and_format():
    base = feeds.etag("rss", feeds.FeedQuery("en"), Cursor("a", 1), "http://t/")
    assert base == feeds.etag("rss", feeds.FeedQuery("en"), Cursor("a", 1), "http://t/")
    others = {
        feeds.etag("atom", feeds.FeedQuery("en"), Cursor("a", 1), "http://t/"),
        feeds.etag("rss", feeds.FeedQuery("en"), Cursor("a", 2), "http://t/"),
        feeds.etag("rss", feeds.FeedQuery("en", "Asia"), Cursor("a", 1), "http://t/"),
        feeds.etag("rss", feeds.FeedQuery("en", None, "Health"), Cursor("a", 1), "http://t/"),
        feeds.etag("rss", feeds.FeedQuery("ar"), Cursor("a", 1), "http://t/"),
    }
    assert base not in others and len(others) == 5 and base.startswith('W/"')


def test_a_date_is_sent_once_its_second_is_over():
    fresh = feeds.Freshness()
    first = datetime(2026, 5, 7, 15, 0, 0, 200_000, tzinfo=UTC)

    def ask(now, headers=None):
        return feeds.answer(
            "atom",
            feeds.FeedQuery("en"),
            Cursor("a", 1),
            [],
            request_headers=headers or {},
            base_url="http://t/",
            self_url="http://t/feeds/en.atom",
            now=now,
            freshness=fresh,
        )

    assert "Last-Modified" not in ask(first).headers
    assert "Last-Modified" not in ask(first + timedelta(milliseconds=700)).headers
    later = ask(first + timedelta(seconds=1))
    assert later.headers["Last-Modified"] == "Thu, 07 May 2026 15:00:00 GMT"
    again = ask(first + timedelta(seconds=5), {"if-modified-since": later.headers["Last-Modified"]})
    assert again.status == 304 and again.body == b""


# --- documents -------------------------------------------------------------------------------


def render(kind: str, live: list[items.Item], query: feeds.FeedQuery | None = None) -> bytes:
    query = query or feeds.FeedQuery(live[0].edition if live else "en")
    answer = feeds.answer(
        kind,
        query,
        Cursor("a", 1),
        [i.to_dict() for i in live],
        request_headers={},
        base_url="http://t.example/",
        self_url=f"http://t.example/feeds/{query.edition}.{kind}",
        now=NOW + timedelta(minutes=1),
        freshness=feeds.Freshness(),
    )
    assert answer.status == 200
    return answer.body


def test_text_that_xml_cannot_hold_is_replaced_not_fatal():
    odd = make(headline="Noncharacters \ufffe and \uffff stay out", source="A\ufffeB")
    for kind in ("rss", "atom"):
        parsed = feedparser.parse(render(kind, [odd]))
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.entries[0].title == "Noncharacters \ufffd and \ufffd stay out"
    assert json.loads(render("json", [odd]))["items"][0]["title"] == odd.headline


def test_an_empty_feed_is_still_a_valid_feed():
    for kind in ("rss", "atom"):
        parsed = feedparser.parse(render(kind, []))
        assert not parsed.bozo and parsed.entries == [] and parsed.feed.title == "Breaking news"
    assert json.loads(render("json", []))["items"] == []


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


async def read(stack, edition: str, kind: str, **params) -> feedparser.FeedParserDict:
    response = await stack.http.get(f"/feeds/{edition}.{kind}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == feeds.MEDIA_TYPES[kind]
    assert response.headers["cache-control"] == "public, max-age=15"
    assert "content-security-policy" in response.headers
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def json_feed_ok(doc: dict) -> None:
    """The fields JSON Feed 1.1 requires, and the types it gives them."""
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["items"], list)
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_text") or item.get("content_html"), str)
        for key in ("date_published", "date_modified"):
            assert items.parse_time(item[key]).tzinfo is not None
        for key in ("url", "external_url"):
            assert key not in item or item[key].startswith("http")
    for key in ("home_page_url", "feed_url"):
        assert doc[key].startswith("http")


async def test_three_formats_of_one_edition(stack):
    base = str(stack.http.base_url).rstrip("/")
    older = await stack.post(headline="Markets open & <b>bold</b> <script>x</script>")
    await asyncio.sleep(0.01)
    newer = await stack.post(
        headline="Ceasefire talks resume",
        source="Reuters",
        link="https://news.example/talks",
        regions=["MENA"],
        categories=["Politics"],
    )
    for kind in ("rss", "atom"):
        parsed = await read(stack, "en", kind)
        assert parsed.version == {"rss": "rss20", "atom": "atom10"}[kind]
        assert parsed.feed.title == "Breaking news" and parsed.feed.language == "en"
        assert parsed.feed.link == f"{base}/live/en"
        first, second = parsed.entries
        assert first.id == f"urn:ticker:en:{newer['id']}"
        assert second.id == f"urn:ticker:en:{older['id']}"
        assert first.title == "Ceasefire talks resume"
        assert second.title == older["headline"]  # text, escaped on the wire, intact here
        assert first.link == "https://news.example/talks"
        assert second.link == f"{base}/live/en#{older['id']}"
        assert first.author == "Reuters"
        assert {t.term for t in first.tags} == {"MENA", "Politics"}
        assert calendar.timegm(first.published_parsed) == epoch(newer["created"])
    atom = await read(stack, "en", "atom")
    assert calendar.timegm(atom.entries[0].updated_parsed) == epoch(newer["updated"])

    response = await stack.http.get("/feeds/en.json")
    assert response.headers["content-type"] == "application/feed+json; charset=utf-8"
    doc = response.json()
    json_feed_ok(doc)
    assert doc["language"] == "en" and doc["home_page_url"] == f"{base}/live/en"
    assert doc["feed_url"] == f"{base}/feeds/en.json"
    assert [i["id"] for i in doc["items"]] == [
        f"urn:ticker:en:{newer['id']}",
        f"urn:ticker:en:{older['id']}",
    ]
    top = doc["items"][0]
    assert top["content_text"] == "Reuters: Ceasefire talks resume"
    assert top["authors"] == [{"name": "Reuters"}] and top["url"] == "https://news.example/talks"
    assert top["date_published"] == newer["created"]


async def test_arabic_feeds_keep_language_direction_and_text(stack):
    headline = "الرئيس يكلّف السفير سيمون كرم برئاسة الوفد"
    item = await stack.post(edition="ar", headline=headline, source="الرئاسة اللبنانية")
    for kind in ("rss", "atom"):
        parsed = await read(stack, "ar", kind)
        assert parsed.feed.language == "ar" and parsed.feed.title == "عاجل"
        assert parsed.entries[0].title == headline
        assert parsed.entries[0].id == f"urn:ticker:ar:{item['id']}"
    atom = await read(stack, "ar", "atom")
    content = atom.entries[0].content[0]
    assert 'dir="rtl"' in content.value and headline in content.value
    raw = (await stack.http.get("/feeds/ar.atom")).text
    assert 'xml:lang="ar"' in raw
    doc = (await stack.http.get("/feeds/ar.json")).json()
    json_feed_ok(doc)
    assert doc["language"] == "ar" and doc["items"][0]["title"] == headline
    assert (await read(stack, "es", "rss")).feed.language == "es"


async def test_filters_and_errors(stack):
    europe = await stack.post(headline="Europe", regions=["Europe"], categories=["Economy"])
    await stack.post(headline="Asia", regions=["Asia"])
    parsed = await read(stack, "en", "rss", region="europe")
    assert [e.id for e in parsed.entries] == [f"urn:ticker:en:{europe['id']}"]
    assert parsed.feed.title == "Breaking news · Europe"
    doc = (await stack.http.get("/feeds/en.json", params={"category": "Economy"})).json()
    assert [i["title"] for i in doc["items"]] == ["Europe"]

    for url, params, status in (
        ("/feeds/xx.rss", {}, 404),
        ("/feeds/en.rss", {"region": "Mars"}, 400),
        ("/feeds/en.atom", {"category": "Gossip"}, 400),
        ("/feeds/en.json", {"utm_source": "x"}, 400),
        ("/feeds/en.xml", {}, 404),
    ):
        response = await stack.http.get(url, params=params)
        assert response.status_code == status, url
        body = response.json()
        assert body["error"] in ("not_found", "invalid_parameter") and body["message"]
    assert "Mars" in (await stack.http.get("/feeds/en.rss", params={"region": "Mars"})).text


async def test_corrections_update_and_withdrawals_leave(stack):
    item = await stack.post(headline="First version")
    other = await stack.post(headline="Stays")
    before = await read(stack, "en", "atom")
    await asyncio.sleep(0.01)
    fixed = await stack.correct(item["id"], headline="Second version")
    after = await read(stack, "en", "atom")
    entry = next(e for e in after.entries if e.id == f"urn:ticker:en:{item['id']}")
    assert entry.title == "Second version"
    assert calendar.timegm(entry.updated_parsed) == epoch(fixed["updated"])
    assert entry.published == next(
        e.published for e in before.entries if e.id == entry.id
    )  # same entry, same first publication
    doc = (await stack.http.get("/feeds/en.json")).json()
    top = next(i for i in doc["items"] if i["id"].endswith(item["id"]))
    assert top["date_modified"] == fixed["updated"] and top["title"] == "Second version"

    await stack.withdraw(item["id"])
    for kind in ("rss", "atom"):
        assert [e.id for e in (await read(stack, "en", kind)).entries] == [
            f"urn:ticker:en:{other['id']}"
        ]
    doc = (await stack.http.get("/feeds/en.json")).json()
    assert [i["id"] for i in doc["items"]] == [f"urn:ticker:en:{other['id']}"]


async def test_expired_items_leave(stack):
    await stack.post(headline="Brief", expires_in=1)
    assert len((await read(stack, "en", "rss")).entries) == 1
    await asyncio.sleep(1.3)
    assert (await read(stack, "en", "rss")).entries == []


async def test_conditional_get(stack):
    await stack.post(headline="One")
    first = await stack.http.get("/feeds/en.rss")
    tag = first.headers["etag"]
    again = await stack.http.get("/feeds/en.rss", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == tag and again.headers["cache-control"] == "public, max-age=15"
    other = await stack.http.get("/feeds/en.atom", headers={"If-None-Match": tag})
    assert other.status_code == 200  # each format has its own tag
    filtered = await stack.http.get("/feeds/en.rss?region=Asia", headers={"If-None-Match": tag})
    assert filtered.status_code == 200

    await asyncio.sleep(1.05)  # Last-Modified is sent once the second of the change is over
    dated = await stack.http.get("/feeds/en.rss")
    assert dated.headers["etag"] == tag
    last_modified = dated.headers["last-modified"]
    since = await stack.http.get("/feeds/en.rss", headers={"If-Modified-Since": last_modified})
    assert since.status_code == 304

    await stack.post(headline="Two")
    changed = await stack.http.get("/feeds/en.rss", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    stale = await stack.http.get("/feeds/en.rss", headers={"If-Modified-Since": last_modified})
    assert stale.status_code == 200
    # The API still says no-store: only the feeds chose their own caching.
    listing = await stack.http.get("/api/items", params={"edition": "en"})
    assert listing.headers["cache-control"] == "no-store"


# --- any text, any link ------------------------------------------------------------------

ANY_TEXT = st.text(min_size=1, max_size=120)
ARABIC = st.text(st.characters(min_codepoint=0x0600, max_codepoint=0x06FF), min_size=1)


@settings(max_examples=150, deadline=None)
@given(
    edition=st.sampled_from(["en", "ar", "es"]),
    headlines=st.lists(ANY_TEXT | ARABIC, min_size=1, max_size=4),
    source=st.none() | ANY_TEXT,
    link=st.none() | urls() | st.builds(lambda t: f"https://news.example/{t}", ANY_TEXT),
)
def test_any_item_makes_well_formed_feeds(edition, headlines, source, link):
    """Whatever the text (even what the item rules would refuse), every feed still parses."""
    live = [
        replace(
            make(headline="x"),
            id=f"{edition}-{n}",
            edition=edition,
            headline=h,
            source=source,
            link=link,
        )
        for n, h in enumerate(headlines)
    ]
    for kind in ("rss", "atom"):
        parsed = feedparser.parse(render(kind, live))
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.feed.language == edition
        assert [e.id for e in parsed.entries] == [f"urn:ticker:{edition}:{i.id}" for i in live]
    doc = json.loads(render("json", live))
    json_feed_ok(doc)
    assert [i["title"] for i in doc["items"]] == headlines
