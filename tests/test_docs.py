"""The docs stay true: every close code, setting and route the code has is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.routing import Mount, Route

from ticker import config
from ticker.protocol import CloseCode

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = (DOCS.parent / "README.md").read_text()


def test_every_close_code_is_in_the_protocol_doc():
    protocol = (DOCS / "protocol.md").read_text()
    for code in CloseCode:
        assert f"| {code.value} |" in protocol, code


def test_every_setting_is_in_the_configuration_doc():
    documented = set(re.findall(r"`(TICKER_[A-Z0-9_]+)`", (DOCS / "configuration.md").read_text()))
    known = set(config._ENV) | set(config._VOCAB_ENV) | set(config._LIMIT_ENV)
    assert known <= documented, known - documented


def test_readme_has_the_two_commands_and_ci_runs_the_second():
    assert "pip install -e . && ticker serve" in README
    assert "./scripts/test" in README
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


# A row of the route table in docs/api.md: | `GET /api/items/{id}[?format=ninjs]` | who | what |
_ROUTE_ROW = re.compile(r"^\| `([A-Z]+) (/[^`\s]*)` \|", re.MULTILINE)


def _route_key(method: str, path: str) -> tuple[str, str]:
    """A route as (METHOD, path) with the query and optional parts dropped and every path
    parameter written `{}`, so `{id}` in the doc and `{item_id}` in the code compare equal."""
    path = re.sub(r"\[.*?\]", "", path).partition("?")[0]
    return method, re.sub(r"\{[^}]*\}", "{}", path)


def documented_routes(api_doc: str) -> set[tuple[str, str]]:
    return {_route_key(method, path) for method, path in _ROUTE_ROW.findall(api_doc)}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (METHOD, path) the app serves; HEAD comes with GET and is not listed apart.
    A mount (static files) is documented as `GET /static/…`."""
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            routes.add(("GET", route.path + "/…"))
            continue
        assert isinstance(route, Route), route
        routes |= {_route_key(m, route.path) for m in route.methods or () if m != "HEAD"}
    return routes


def route_doc_problems(routes: set[tuple[str, str]], api_doc: str) -> list[str]:
    """What the route table in the API doc gets wrong: routes it lacks, rows for no route."""
    documented = documented_routes(api_doc)
    return [f"undocumented: {m} {p}" for m, p in sorted(routes - documented)] + [
        f"documented but not served: {m} {p}" for m, p in sorted(documented - routes)
    ]


def _publisher_routes() -> set[tuple[str, str]]:
    from ticker.brokers.embedded import EmbeddedBroker
    from ticker.publisher import create_app

    return app_routes(create_app(config.from_env({}), EmbeddedBroker(":memory:", editions=("en",))))


def test_every_api_route_is_in_the_api_doc():
    routes = _publisher_routes()
    # The app has the routes this test expects to find, so a change to how routes are
    # read (e.g. a nested router) cannot make the check vacuous.
    assert {("GET", "/"), ("POST", "/api/items"), ("DELETE", "/api/items/{}")} <= routes
    assert route_doc_problems(routes, (DOCS / "api.md").read_text()) == []


def test_the_route_check_catches_a_missing_route_or_method():
    routes = _publisher_routes()
    api = (DOCS / "api.md").read_text()
    without_delete = api.replace("| `DELETE /api/items/{id}` |", "| `PUT /api/items/{id}` |")
    assert route_doc_problems(routes, without_delete) == [
        "undocumented: DELETE /api/items/{}",
        "documented but not served: PUT /api/items/{}",
    ]
    without_root = "\n".join(line for line in api.splitlines() if "| `GET /` |" not in line)
    assert route_doc_problems(routes, without_root) == ["undocumented: GET /"]
    assert route_doc_problems(routes, "") == [f"undocumented: {m} {p}" for m, p in sorted(routes)]
