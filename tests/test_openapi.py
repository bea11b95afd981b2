"""The OpenAPI description: valid OpenAPI 3.1, every route in it, and schemathesis finds no
500, no answer that contradicts it, on both stores, against a live publisher."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from stack import Stack
from ticker.auth import create_token
from ticker.openapi import document, operation

# Two rules JSON Schema cannot state: a headline must have a visible character, and an item
# may expire a moment after it is posted, before it is read back.
EXCLUDED_CHECKS = "positive_data_acceptance,ensure_resource_availability"


@pytest.fixture(params=["embedded", "redis"])
async def stack(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    # schemathesis fails authentication on purpose, many times: past the limit on failures
    # an address gets 429 (documented), which its check for 401/403 does not expect. The
    # limit has tests of its own (tests/test_limits_publisher.py).
    async with Stack(tmp_path, redis_url=url, auth_failure_rate="off") as running:
        yield running


async def test_the_description_is_valid_and_names_every_route(stack):
    doc = (await stack.http.get("/openapi.json")).json()
    validate(doc)
    app = stack.publisher.server.config.app
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert described == routes
    post = doc["paths"]["/api/items"]["post"]
    assert post["security"] == [{"editorToken": []}]
    assert "Idempotency-Key" in [p["name"] for p in post["parameters"]]
    assert {"201", "401", "413", "415", "422", "503"} <= post["responses"].keys()
    assert doc["components"]["securitySchemes"]["editorToken"]["scheme"] == "bearer"
    editions = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
    assert editions["in"] == "header"


def test_a_route_without_a_description_is_refused() -> None:
    @operation("described", responses={200: ("ok", None)})
    async def described() -> None: ...

    async def forgotten() -> None: ...

    from ticker.config import Settings

    with pytest.raises(ValueError, match="GET /forgotten has no description"):
        document([("/ok", "GET", described), ("/forgotten", "GET", forgotten)], Settings())


async def test_schemathesis_finds_nothing(stack, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is part of the test extra"
    await stack.post(headline="Something to read")
    # Every route open to it: the token routes and the audit trail get garbage too.
    fuzzer = await create_token(stack.broker.tokens, "fuzzer", roles=("admin", "chief"))
    base = str(stack.http.base_url).rstrip("/")
    # The publisher runs on this event loop: wait for schemathesis without blocking it.
    process = await asyncio.create_subprocess_exec(
        st,
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--header",
        f"Authorization: Bearer {fuzzer}",
        "--max-examples",
        "15",
        "--workers",
        "1",
        "--seed",
        "1",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-8000:]
    assert "Tested: " in report
    # Sanity: the publisher is still fine afterwards.
    assert (await httpx.AsyncClient().get(f"{base}/healthz")).status_code == 200
