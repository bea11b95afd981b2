"""The docs stay true: every close code, setting and route the code has is documented."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_every_api_route_is_in_the_api_doc():
    from ticker.brokers.embedded import EmbeddedBroker
    from ticker.publisher import create_app

    app = create_app(config.from_env({}), EmbeddedBroker(":memory:", editions=("en",)))
    api = (DOCS / "api.md").read_text()
    paths = {getattr(route, "path", "") for route in app.routes}
    for path in paths - {""}:
        assert path.split("{")[0].rstrip("/") in api, path
