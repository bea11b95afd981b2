"""IPTC ninjs 2.2 and 3.1: every object the service emits validates against the IPTC schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls
from jsonschema.validators import validator_for

from stack import Stack
from ticker import items, ninjs
from ticker.config import DEFAULT_CATEGORIES, DEFAULT_REGIONS, Limits, Vocabulary

# Copies of the IPTC's published schemas (tests/schemas/README.md says where from).
SCHEMAS = Path(__file__).resolve().parent / "schemas"
NOW = datetime(2026, 5, 7, 15, 42, tzinfo=UTC)


@cache
def validator(version: str):
    schema = json.loads((SCHEMAS / f"ninjs-schema_{version}.json").read_text())
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check(obj: dict, version: str) -> None:
    errors = sorted(validator(version).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_formats_are_really_checked():
    checker = validator("2.2").format_checker
    assert {"uri", "date-time"} <= set(checker.checkers)
    assert not validator("2.2").is_valid({"uri": "not a uri"})
    assert not validator("2.2").is_valid({"uri": "urn:x:y", "versioncreated": "yesterday"})
    assert not validator("3.1").is_valid({"uri": "urn:x:y", "urgency": 0})
    # The shape the service emitted before: 2.2 has no `links`.
    assert not validator("2.2").is_valid({"uri": "urn:x:y", "links": [{"href": "https://a.b"}]})


def make(**payload) -> items.Item:
    payload.setdefault("edition", "en")
    return items.create(payload, editor="amal", vocabulary=Vocabulary(), limits=Limits(), now=NOW)


def test_the_mapping_field_by_field():
    item = make(
        headline="Ushakov: talks stay confidential",
        source="Ushakov",
        urgency=2,
        link="https://news.example/u",
        regions=["Europe"],
        categories=["Politics"],
        expires_in=3600,
    )
    two = ninjs.to_ninjs(item)
    assert two["uri"] == f"urn:ticker:en:{item.id}"
    assert two["pubstatus"] == "usable" and two["urgency"] == 2 and two["version"] == "1"
    assert two["headlines"] == [
        {"role": "main", "value": item.headline, "contenttype": "text/plain"}
    ]
    assert two["places"] == [{"name": "Europe"}]
    assert two["subjects"] == [{"name": "Politics"}]
    assert two["by"] == "Ushakov" and two["language"] == "en"
    assert two["infosources"] == [{"name": "Ushakov", "role": "source"}]
    assert two["expires"] == item.expires and two["versioncreated"] == item.updated
    assert two["firstcreated"] == item.created
    assert two["renditions"] == [
        {"name": "web", "href": "https://news.example/u", "contenttype": "text/html"}
    ]
    assert "links" not in two and "editor" not in json.dumps(two)
    assert two["standard"]["version"] == "2.2"

    three = ninjs.to_ninjs3(item)
    assert three["uri"] == two["uri"] and three["pubStatus"] == "usable"
    assert three["firstCreated"] == item.created and three["versionCreated"] == item.updated
    assert three["headlines"][0]["contentType"] == "text/plain"
    assert three["renditions"][0]["contentType"] == "text/html"
    assert three["infoSources"] == [{"name": "Ushakov", "role": "source"}]
    assert three["standard"]["version"] == "3.1"

    withdrawn = items.withdraw(item, editor="x")
    assert ninjs.to_ninjs(withdrawn)["pubstatus"] == "canceled"
    assert ninjs.to_ninjs3(withdrawn)["pubStatus"] == "canceled"
    assert ninjs.to_ninjs(withdrawn)["version"] == "2"
    for obj, version in ((two, "2.2"), (three, "3.1")):
        check(obj, version)


def test_renderer_names_the_formats():
    assert ninjs.renderer(None) is None
    assert ninjs.renderer("ninjs") is ninjs.to_ninjs
    assert ninjs.renderer("ninjs3") is ninjs.to_ninjs3
    for bad in ("", "NINJS", "xml", "ninjs2.2"):
        with pytest.raises(ninjs.UnknownFormat, match="ninjs3"):
            ninjs.renderer(bad)


@pytest.mark.parametrize(
    ("link", "uri"),
    [
        ("https://news.example/a?b=c#d", "https://news.example/a?b=c#d"),
        ("HTTP://News.Example:8080/x", "http://News.Example:8080/x"),
        ("https://news.example/ü", "https://news.example/%C3%BC"),
        ("https://bücher.example/k", "https://xn--bcher-kva.example/k"),
        (
            'https://news.example/a|b<c>"{}^`\\',
            "https://news.example/a%7Cb%3Cc%3E%22%7B%7D%5E%60%5C",
        ),
        ("https://news.example/100%", "https://news.example/100%25"),
        ("https://news.example/a%20b", "https://news.example/a%20b"),
        ("https://u:p@[::1]:8/q", "https://u:p@[::1]:8/q"),
        ("https://news.example:port/", None),
        ("ftp://news.example/", None),
        (None, None),
    ],
)
def test_links_become_uris(link, uri):
    assert ninjs.web_uri(link) == uri


# --- generated items ---------------------------------------------------------------------

ARABIC = st.text(st.characters(min_codepoint=0x0600, max_codepoint=0x06FF), min_size=1)
TEXT = st.text(min_size=1, max_size=300)
LINKS = st.one_of(
    st.none(),
    urls(),
    st.builds(lambda u, t: u + t, urls(), st.text(max_size=20)),
    st.builds(lambda t: f"https://news.example/{t}", st.text(max_size=40)),
)
STAMPS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def generated_items(draw) -> items.Item:
    edition = draw(st.sampled_from(["en", "ar", "es"]))
    created = draw(STAMPS)
    updated = created + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)))
    expires = draw(st.none() | st.just(updated + timedelta(hours=6)))
    return items.Item(
        id=items.new_item_id(edition),
        edition=edition,
        headline=draw(ARABIC if edition == "ar" else TEXT),
        source=draw(st.none() | TEXT | ARABIC),
        link=draw(LINKS),
        urgency=draw(st.integers(1, 9)),
        regions=tuple(draw(st.lists(st.sampled_from(DEFAULT_REGIONS), unique=True, max_size=8))),
        categories=tuple(
            draw(st.lists(st.sampled_from(DEFAULT_CATEGORIES), unique=True, max_size=8))
        ),
        created=items.now_iso(created),
        updated=items.now_iso(updated),
        version=draw(st.integers(1, 10_000)),
        status=draw(st.sampled_from(["live", "withdrawn", "expired"])),
        expires=items.now_iso(expires) if expires else None,
        editor="desk",
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_items())
def test_every_generated_item_validates_in_both_versions(item):
    two, three = ninjs.to_ninjs(item), ninjs.to_ninjs3(item)
    check(two, "2.2")
    check(three, "3.1")
    assert two["headlines"][0]["value"] == item.headline
    assert three["language"] == item.edition
    assert ("renditions" in two) == (ninjs.web_uri(item.link) is not None)


@settings(max_examples=200, deadline=None)
@given(
    headline=TEXT | ARABIC,
    link=LINKS,
    source=st.none() | TEXT,
    urgency=st.integers(1, 9),
    expires_in=st.none() | st.integers(1, 7 * 24 * 3600),
)
def test_every_item_the_rules_accept_validates(headline, link, source, urgency, expires_in):
    """Through `items.create`, as the API makes them: any link it accepts still validates."""
    try:
        item = make(
            edition="ar",
            headline=headline,
            link=link,
            source=source,
            urgency=urgency,
            expires_in=expires_in,
        )
    except items.ItemError:
        return
    check(ninjs.to_ninjs(item), "2.2")
    check(ninjs.to_ninjs3(item), "3.1")
    if item.link:
        assert ninjs.web_uri(item.link) is not None


# --- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


async def test_one_item_and_the_list_in_both_versions(stack):
    plain = await stack.post(headline="Older & <quieter>", regions=["Europe"])
    linked = await stack.post(
        edition="en",
        headline="Ushakov: talks stay confidential",
        source="Kremlin",
        link="https://news.example/ushakov",
        urgency=1,
        categories=["Politics"],
        expires_in=3600,
    )
    for fmt, version in (("ninjs", "2.2"), ("ninjs3", "3.1")):
        for item in (plain, linked):
            response = await stack.http.get(f"/api/items/{item['id']}", params={"format": fmt})
            assert response.status_code == 200
            check(response.json(), version)
            assert response.json()["uri"] == f"urn:ticker:en:{item['id']}"
        listing = await stack.http.get("/api/items", params={"edition": "en", "format": fmt})
        assert listing.status_code == 200
        body = listing.json()
        assert body["edition"] == "en" and body["cursor"]
        assert [o["uri"].rsplit(":", 1)[1] for o in body["items"]] == [linked["id"], plain["id"]]
        for obj in body["items"]:
            check(obj, version)


async def test_arabic_item_over_http(stack):
    item = await stack.post(edition="ar", headline="عاجل: وقف إطلاق النار", source="الرئاسة")
    obj = (await stack.http.get(f"/api/items/{item['id']}", params={"format": "ninjs3"})).json()
    check(obj, "3.1")
    assert obj["language"] == "ar" and obj["headlines"][0]["value"] == "عاجل: وقف إطلاق النار"


async def test_unknown_format_is_refused_with_the_reason(stack):
    item = await stack.post(headline="x")
    for url, params in (
        (f"/api/items/{item['id']}", {"format": "xml"}),
        ("/api/items", {"edition": "en", "format": "xml"}),
        ("/api/items", {"edition": "en", "format": ""}),
    ):
        response = await stack.http.get(url, params=params)
        assert response.status_code == 400, url
        body = response.json()
        assert body["error"] == "invalid_parameter"
        assert "ninjs3" in body["message"] and body["fields"] == {"format": "unknown"}
