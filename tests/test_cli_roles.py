"""`ticker token` with roles, `ticker token migrate` and `ticker audit`: real processes,
on both stores."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from procs import ticker
from redisserver import RedisServer


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "redis":
        return ["--redis-url", request.getfixturevalue("redis_url")]
    return ["--db", str(tmp_path / "t.db")]


def test_tokens_with_roles_scope_and_expiry(store: list[str]) -> None:
    made = ticker("token", "create", "amal", "--role", "editor", "--editions", "en,ar",
                  "--expires", "90d", *store)  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("tkr_") and "editor; en,ar; expires 20" in made.stderr
    assert ticker("token", "create", "ops", "--role", "admin", *store).returncode == 0
    listing = ticker("token", "list", *store).stdout.splitlines()
    assert listing[0].startswith("amal\teditor\ten,ar\texpires 20")
    assert listing[0].endswith("last used never")
    assert listing[1].startswith("ops\tadmin\tall\texpires never")

    rotated = ticker("token", "rotate", "amal", *store)
    assert rotated.returncode == 0 and rotated.stdout.strip().startswith("tkr_")
    assert rotated.stdout.strip() != secret
    assert ticker("token", "rotate", "nobody", *store).returncode == 1
    assert ticker("token", "revoke", "amal", *store).returncode == 0

    trail = ticker("audit", "--json", *store)
    assert trail.returncode == 0, trail.stderr
    entries = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [(e["action"], e["subject"]) for e in entries] == [
        ("token.revoked", "amal"),
        ("token.rotated", "amal"),
        ("token.created", "ops"),
        ("token.created", "amal"),
    ]
    assert all(e["actor"].startswith("shell:") and e["role"] == "operator" for e in entries)
    assert entries[3]["changes"]["editions"] == [None, ["en", "ar"]]
    assert secret not in trail.stdout
    page = ticker("audit", "--limit", "1", *store)
    assert page.returncode == 0 and len(page.stdout.splitlines()) == 1
    assert "token.revoked" in page.stdout and "# more: --cursor " in page.stderr
    cursor = page.stderr.split("--cursor ")[1].strip()
    following = ticker("audit", "--limit", "1", "--cursor", cursor, *store)
    assert "token.rotated" in following.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["token", "create", "x", "--role", "writer"], "unknown role 'writer'"),
        (["token", "create", "x", "--role", "editor", "--editions", "fr"], "unknown edition 'fr'"),
        (["token", "create", "x", "--role", "chief", "--editions", "en"], "only an editor"),
        (["token", "create", "x", "--expires", "soon"], "expires"),
        (["token", "create", "no spaces"], "token name"),
        (["token", "migrate", "--role", "boss"], "unknown role"),
        (["audit", "--from", "yesterday"], "--from"),
        (["audit", "--limit", "0"], "--limit"),
        (["audit", "--cursor", "nonsense"], "--cursor"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, args: list[str], words: str) -> None:
    done = ticker(*args, "--db", str(tmp_path / "t.db"))
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_migrate_tokens_made_before_roles_embedded(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:  # as the store was before roles
        old.execute(
            "CREATE TABLE tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,"
            " created TEXT NOT NULL)"
        )
        old.execute("INSERT INTO tokens VALUES ('desk', 'd1', '2025-01-01T00:00:00.000Z')")
    store = ["--db", str(db)]
    listing = ticker("token", "list", *store)
    assert listing.stdout.startswith("desk\tchief (legacy)\tall\t"), listing.stderr
    narrower = ticker("token", "list", *store, env={"TICKER_LEGACY_TOKEN_ROLE": "editor"})
    assert narrower.stdout.startswith("desk\teditor (legacy)\tall\t")
    moved = ticker("token", "migrate", "--role", "editor", "--editions", "en", *store)
    assert moved.returncode == 0 and moved.stdout == "migrated desk\n"
    assert ticker("token", "list", *store).stdout.startswith("desk\teditor\ten\t")
    again = ticker("token", "migrate", "--role", "chief", *store)
    assert again.stdout == "" and "0 token(s)" in again.stderr
    trail = ticker("audit", "--json", *store).stdout.splitlines()
    assert [json.loads(line)["action"] for line in trail] == ["token.migrated"]


def test_migrate_tokens_made_before_roles_redis(redis_server: RedisServer, redis_url: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset("ticker:{tokens}", "desk", '{"digest": "d1", "created": "2025-01-01T00:00:00Z"}')
        raw.hset("ticker:{tokens}:digests", "d1", "desk")
    finally:
        raw.close()
    store = ["--redis-url", redis_url]
    assert ticker("token", "list", *store).stdout.startswith("desk\tchief (legacy)\tall\t")
    moved = ticker("token", "migrate", "--role", "admin,editor", *store)
    assert moved.stdout == "migrated desk\n", moved.stderr
    assert ticker("token", "list", *store).stdout.startswith("desk\tadmin,editor\tall\t")


def test_bad_settings_of_roles_and_audit_stop_at_once(tmp_path: Path) -> None:
    store = ["--db", str(tmp_path / "t.db")]
    for env, name in (
        ({"TICKER_AUDIT_DAYS": "0"}, "TICKER_AUDIT_DAYS"),
        ({"TICKER_AUDIT_DAYS": "ninety"}, "TICKER_AUDIT_DAYS"),
        ({"TICKER_LEGACY_TOKEN_ROLE": "boss"}, "TICKER_LEGACY_TOKEN_ROLE"),
    ):
        done = ticker("token", "list", *store, env=env)
        assert done.returncode == 2 and name in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
