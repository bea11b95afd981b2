"""Hostile bodies for POST and PATCH over real HTTP, on both stores.

Whatever an editor's client sends, the publisher answers with a clean JSON refusal or a
valid item: never a 500, never a body that cannot be encoded, always the security headers.
The run is bounded and derandomized, so it takes seconds and fails the same way every time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack import Stack
from ticker import items as rules
from ticker.items import Item

FIELDS = (
    "edition",
    "headline",
    "source",
    "link",
    "urgency",
    "regions",
    "categories",
    "expires",
    "expires_in",
    "version",
    "id",
)

# Characters that have broken text handling somewhere: lone surrogates, controls, line and
# paragraph separators, bidi controls, invisible fillers, combining marks, noncharacters.
NASTY_CHARS = (
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\x00",
    "\x07",
    "\t",
    "\n",
    "\r",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u034f",
    "\u115f",
    "\u1160",
    "\u3164",
    "\uffa0",
    "\u2800",
    "\u180e",
    "\ufe0f",
    "\U000e0041",
    "\U000e007f",
    "\u0301",
    "\u20e3",
    "\ufffe",
    "\uffff",
    "\U0010ffff",
    "\ue000",
    "\u3000",
    "\xa0",
    "<",
    "&",
    '"',
    "\\",
    " ",
)

characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from(NASTY_CHARS),
)
texts = st.one_of(
    st.text(characters, max_size=40),
    st.text(characters, min_size=250, max_size=400),
    st.sampled_from(["x" * 301, "s" * 81, "https://news.example/" + "p" * 2000]),
)
links = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["https://", "http://", "HTTPS://", "javascript:", "ftp://", "//", ""]),
    st.text(characters, max_size=30),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1e20, -1e308, 1e308, -0.0, 1e-300, 0.5, 59.9, 604800, 604801, 2**63]),
    st.booleans(),
)
isoish = st.one_of(
    st.sampled_from(
        [
            "2026-05-08T00:00:00Z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-05-08T00:00:00",
            "2026-05-08",
            "",
        ]
    ),
    st.text(characters, max_size=30),
)
scalars = st.one_of(st.none(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
tag_lists = st.one_of(
    st.lists(
        st.one_of(st.sampled_from(["Europe", "mena", " Palestine ", "Politics", "Sports"]), texts),
        max_size=10,
    ),
    json_values,
)
field_values = {
    "edition": st.one_of(st.sampled_from(["en", "ar", "es", "EN", "fr", ""]), json_values),
    "headline": st.one_of(texts, st.sampled_from(["Ceasefire announced"]), json_values),
    "source": st.one_of(texts, st.none(), json_values),
    "link": st.one_of(links, st.none(), json_values),
    "urgency": st.one_of(st.integers(min_value=-2, max_value=12), numbers, json_values),
    "regions": tag_lists,
    "categories": tag_lists,
    "expires": st.one_of(isoish, json_values),
    "expires_in": st.one_of(numbers, json_values),
    "version": st.one_of(st.integers(min_value=0, max_value=3), numbers, json_values),
    "id": st.one_of(texts, json_values),
}


@st.composite
def known_fields(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """An object built from the known field names (and a few strangers), hostile values."""
    body = dict(base)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        body[name] = draw(field_values[name])
    for name in draw(st.lists(texts, max_size=2)):
        body[name] = draw(json_values)
    return body


# Values an editor might well mean, so a good share of the bodies make or correct an item.
plausible = st.fixed_dictionaries(
    {},
    optional={
        "headline": st.text(characters, min_size=1, max_size=60),
        "source": st.one_of(st.none(), st.text(characters, max_size=20)),
        "link": st.one_of(st.none(), st.builds("https://news.example/{}".format, st.text())),
        "urgency": st.integers(min_value=1, max_value=9),
        "regions": st.lists(st.sampled_from(["Europe", "mena", " Palestine ", "Asia"])),
        "categories": st.lists(st.sampled_from(["Politics", "sports", "Arts&Culture"])),
        "expires_in": st.one_of(
            st.integers(min_value=1, max_value=604800), st.floats(min_value=1, max_value=6e5)
        ),
    },
)


@st.composite
def plausible_fields(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A likely body with at most one hostile value in it."""
    body = {**base, **draw(plausible)}
    if draw(st.booleans()):
        name = draw(st.sampled_from(FIELDS))
        body[name] = draw(field_values[name])
    return body


post_bodies = st.one_of(
    plausible_fields({"edition": "en", "headline": "Ceasefire announced"}),
    known_fields({"edition": "en", "headline": "Ceasefire announced"}),
    known_fields({}),
    json_values,
)
patch_bodies = st.one_of(plausible_fields({}), known_fields({}), json_values)


def encode(body: Any) -> bytes:
    """JSON as an editor's client might send it: escapes for lone surrogates, NaN allowed."""
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def check(response: Any, stack: Stack) -> dict[str, Any] | None:
    """The answer is never a 500, always carries the headers, and its body is clean JSON;
    an item that comes back passes the item rules again."""
    assert response.status_code < 500, response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    body = json.loads(response.content.decode("utf-8"))  # strict: no lone surrogates
    if response.status_code >= 400:
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["message"], str) and body["message"]
        assert "Traceback" not in body["message"]
        return None
    item = Item.from_dict(body)
    given_fields = ("headline", "source", "link", "urgency", "regions", "categories")
    again = rules.create(
        {
            "edition": item.edition,
            **{name: body[name] for name in given_fields},
            "expires": item.expires,
        },
        editor=item.editor,
        vocabulary=stack.settings.vocabulary,
        limits=stack.settings.limits,
        now=rules.parse_time(item.updated),
    )
    assert (again.headline, again.source, again.link) == (item.headline, item.source, item.link)
    assert (again.regions, again.categories) == (item.regions, item.categories)
    assert item.expires is None or rules.parse_time(item.expires) > rules.parse_time(item.updated)
    return body


@pytest.fixture(params=["embedded", "redis"])
async def fuzz_stack(request, tmp_path):
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(tmp_path, redis_url) as running:
        yield running


FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=post_bodies)
async def test_post_never_fails_on_editor_input(fuzz_stack, body):
    stack = fuzz_stack
    response = await stack.http.post(
        "/api/items",
        content=encode(body),
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    posted = check(response, stack)
    if posted is not None:
        assert response.status_code == 201
        stored = await stack.http.get(f"/api/items/{posted['id']}")
        assert stored.json() == posted


@FUZZ
@given(body=patch_bodies)
async def test_patch_never_fails_on_editor_input(fuzz_stack, body):
    stack = fuzz_stack
    item = await stack.post(headline="Under correction", expires_in=3600)
    response = await stack.http.patch(
        f"/api/items/{item['id']}",
        content=encode(body),
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    corrected = check(response, stack)
    if corrected is not None:
        assert response.status_code == 200
        assert (corrected["id"], corrected["version"]) == (item["id"], 2)
