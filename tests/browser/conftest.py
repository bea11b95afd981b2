"""Fixtures for the browser tests; the helpers behind them are in browserkit.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browserkit import (
    CHROMIUM_ARGS,
    PageWatch,
    Server,
    find_chromium,
    serve,
    watched_context,
)
from playwright.sync_api import Browser, BrowserContext, sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("ticker")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def context(browser: Browser, watch: PageWatch) -> Iterator[BrowserContext]:
    with watched_context(browser, watch, reduced_motion="no-preference") as context:
        yield context
