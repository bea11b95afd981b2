"""Hostile registration bodies over real HTTP, on both stores: a clean 400 naming the
field, or a webhook; never a 500, never a body that cannot be encoded."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack import Stack
from ticker.auth import create_token

NASTY = st.sampled_from(["\ud800", "\x00", "\u202e", "\ufeff", "\U0010ffff", "é", "", " "])
text = st.text(max_size=30) | st.lists(NASTY, max_size=4).map("".join)
urls = st.one_of(
    text,
    st.sampled_from(
        [
            "http://127.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1",
            "http://a:b@c.example/",
            "https://hooks.example/in",
            "http://hooks.example:0/",
            "http://hooks.example:65536/",
            "http://%zz/",
            "http://\ud800.example/",
            "https://hooks.example/" + "a" * 3000,
        ]
    ),
    st.integers(),
    st.none(),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "edition": st.sampled_from(["en", "EN", "xx", ""]) | values,
        "urgency": st.integers(-2, 12) | values,
        "regions": st.lists(st.sampled_from(["MENA", "mena", "Mars", "\ud800"]) | values) | values,
        "categories": st.lists(st.sampled_from(["Sports", "x"]) | values) | values,
        "\ud800": values,
    },
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "url": urls,
            "filters": filters | values,
            "format": st.sampled_from(["event", "ninjs", "ninjs3", "xml"]) | values,
            "description": text | values,
            "extra": values,
        },
    )
    | values
)


def encode(body) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.fixture(params=["embedded", "redis"])
async def fuzz_stack(request, tmp_path):
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    # Registrations that pass point anywhere: nothing may be sent to them.
    async with Stack(tmp_path, redis_url, webhook_delivery=False) as running:
        running.token = await create_token(running.broker.tokens, "boss", roles=("admin",))
        yield running


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
async def test_registration_never_fails_on_hostile_input(fuzz_stack, body):
    stack = fuzz_stack
    response = await stack.http.post(
        "/api/webhooks",
        content=encode(body),
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    assert response.status_code in (201, 400, 413), response.text
    answer = response.json()
    if response.status_code == 201:
        assert answer["secret"].startswith("whsec_")
        assert answer["url"] == body["url"]
        shown = await stack.http.get(f"/api/webhooks/{answer['id']}", headers=stack.auth)
        assert shown.status_code == 200 and shown.json()["filters"] == answer["filters"]
    elif response.status_code == 400:
        assert answer["error"] in ("invalid", "malformed_json")
        assert answer["message"]
        if answer["error"] == "invalid":
            assert answer["fields"]
