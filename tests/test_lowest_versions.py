"""The lowest versions pyproject.toml allows really work: each is installed from the package
index into a folder of its own (kept under .venv/lowest/, so a rerun installs nothing) and put
first on sys.path of a subprocess that runs the code against it.

The index must be reachable: when pip cannot install a version, the test fails and says so;
it never skips, or a bound nobody tests would go unnoticed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "lowest"
TESTS = Path(__file__).resolve().parent


def declared_floor(name: str) -> str:
    """The version after `>=` in the project's dependency on `name`."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        match = re.fullmatch(rf"{re.escape(name)}\s*>=\s*([0-9][0-9.]*)(\s*,.*)?", requirement)
        if match:
            return match[1]
    raise AssertionError(f"pyproject.toml declares no lower bound `{name}>=…`: {dependencies}")


def install(*names: str) -> Path:
    """A folder holding the declared lowest version of each of `names`, and nothing else."""
    pins = [f"{name}=={declared_floor(name)}" for name in names]
    target = CACHE / "+".join(pin.replace("==", "-") for pin in pins)
    if (target / ".complete").exists():
        return target
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            target,
            "--disable-pip-version-check",
            "--no-warn-conflicts",
            *pins,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(
            f"pip could not install {' '.join(pins)} (is the package index reachable?):\n"
            + done.stderr[-2000:],
            pytrace=False,
        )
    (target / ".complete").write_text("\n".join(pins) + "\n")
    return target


def installed(out: str) -> dict[str, Version]:
    """The `name version` lines a script printed."""
    return {name: Version(version) for name, version in (line.split() for line in out.splitlines())}


def run_with(target: Path, script: str, *args: str) -> str:
    """Run `script` with `target` first on sys.path; its stdout, or the failure."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(TESTS), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_redis_broker_works_with_the_lowest_redis_py(redis_url: str):
    target = install("redis")
    out = run_with(
        target,
        """
        import asyncio, sys
        import redis
        from ticker.brokers.base import Change
        from ticker.brokers.redis import RedisBroker
        from ticker.config import Limits, Vocabulary
        from ticker.events import EditionState, Event
        from ticker.items import create

        assert redis.__file__.startswith(sys.argv[2]), redis.__file__

        async def main():
            broker = RedisBroker(sys.argv[1], editions=("en",), history=10)
            await broker.start()
            try:
                await broker.ping()
                follower = broker.follow(("en",))
                first = await asyncio.wait_for(anext(follower), 5)
                assert isinstance(first, EditionState) and first.items == [], first
                item = create(
                    {"edition": "en", "headline": "Quake hits the coast"},
                    editor="desk", vocabulary=Vocabulary(), limits=Limits(),
                )
                published = await broker.publish(Change("posted", item))
                assert published.cursor is not None and published.cursor.offset == 1
                event = await asyncio.wait_for(anext(follower), 5)
                assert isinstance(event, Event), event
                assert (event.kind, event.item["id"]) == ("posted", item.id)
                assert event.cursor == published.cursor
                state = await broker.state("en")
                assert [i["id"] for i in state.items] == [item.id]
                assert state.cursor == published.cursor and len(state.events) == 1
                await follower.aclose()
            finally:
                await broker.close()
            print("redis", redis.__version__)

        asyncio.run(main())
        """,
        redis_url,
        str(target),
    )
    assert installed(out) == {"redis": Version(declared_floor("redis"))}


def test_hub_and_publisher_work_with_the_lowest_websockets_starlette_and_uvicorn(tmp_path):
    target = install("websockets", "starlette", "uvicorn")
    out = run_with(
        target,
        """
        import asyncio, sys
        from pathlib import Path
        import starlette, uvicorn, websockets
        from stack import Client, Stack

        for module in (starlette, uvicorn, websockets):
            assert module.__file__.startswith(sys.argv[2]), module.__file__

        async def main():
            async with Stack(Path(sys.argv[1])) as stack:
                old = await stack.post(headline="Already on the ticker")
                async with Client.connect(stack.ws_url(edition="en")) as client:
                    snapshot = await client.next()
                    assert [i["id"] for i in snapshot["items"]] == [old["id"]], snapshot
                    item = await stack.post(headline="Live", urgency=1)
                    event = await client.next_event()
                    assert (event["kind"], event["item"]["id"]) == ("posted", item["id"])
                    corrected = await stack.correct(item["id"], headline="Live, corrected")
                    event = await client.next_event()
                    assert event["item"]["version"] == corrected["version"] == 2
            print("websockets", websockets.__version__)
            print("starlette", starlette.__version__)
            print("uvicorn", uvicorn.__version__)

        asyncio.run(main())
        """,
        str(tmp_path),
        str(target),
    )
    assert installed(out) == {
        name: Version(declared_floor(name)) for name in ("websockets", "starlette", "uvicorn")
    }


def test_web_push_works_with_the_lowest_vapid_ece_cryptography_and_aiohttp():
    """A push encrypted, signed and sent with the lowest versions, checked and decrypted by
    the tests' push service."""
    target = install("py-vapid", "http-ece", "cryptography", "aiohttp")
    out = run_with(
        target,
        """
        import asyncio, sys
        import aiohttp, cryptography, http_ece, py_vapid
        from importlib.metadata import version
        from pushservice import PushService
        from ticker.push import rules
        from ticker.push.sender import Resolver, Sender, Signer, new_keys

        for module in (aiohttp, cryptography, http_ece, py_vapid):
            assert module.__file__.startswith(sys.argv[1]), module.__file__

        async def main():
            keys = new_keys()
            service = PushService(keys.public_key).start()
            try:
                browser = service.browser("lowest")
                body = browser.subscription(edition="en")
                allowed = rules.parse_networks(["127.0.0.0/8"])
                sub = rules.parse(body, __import__("ticker.config").config.Vocabulary(), allowed)
                sender = Sender(Signer(keys, "mailto:desk@news.example"), Resolver(allowed))
                try:
                    result = await sender.send(
                        sub, b'{"kind":"posted","id":"en-1"}', ttl=60, urgency="high", topic="en-1"
                    )
                finally:
                    await sender.close()
                assert result.outcome == "sent", result
                assert service.problems == [], service.problems
                assert service.messages("lowest") == [{"kind": "posted", "id": "en-1"}]
            finally:
                service.stop()

        asyncio.run(main())
        for name in ("py-vapid", "http-ece", "cryptography", "aiohttp"):
            print(name, version(name))
        """,
        str(target),
    )
    assert installed(out) == {
        name: Version(declared_floor(name))
        for name in ("py-vapid", "http-ece", "cryptography", "aiohttp")
    }
