"""The embedded broker: one process, durable in a local SQLite file.

It is what `ticker serve` runs on, so a newcomer needs nothing but Python. A restart keeps
the live ticker and the resume history, because both are in the file. Each publish is one
SQLite transaction, and followers are fed in the same step, so history and live events
never disagree.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..events import Cursor, EditionState, Event, event_body, event_payload
from ..items import Item, edition_of, parse_time
from .base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    Change,
    IdempotencyMismatch,
    Published,
    TokenStore,
    VersionConflict,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (edition TEXT PRIMARY KEY, epoch TEXT NOT NULL,
    offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, edition TEXT NOT NULL,
    json TEXT NOT NULL, expires_ms INTEGER);
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (edition TEXT NOT NULL, offset INTEGER NOT NULL,
    payload BLOB NOT NULL, editor TEXT NOT NULL, PRIMARY KEY (edition, offset));
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
    item TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL);
"""


def _expiry_ms(item: Item) -> int | None:
    return int(parse_time(item.expires).timestamp() * 1000) if item.expires else None


class EmbeddedBroker(Broker):
    def __init__(
        self,
        path: Path | str,
        *,
        editions: tuple[str, ...],
        history: int = 1000,
        idempotency_seconds: int = 86400,
    ) -> None:
        self.path = Path(path)
        self.editions = editions
        self.history = history
        self.idempotency_seconds = idempotency_seconds
        self._db: sqlite3.Connection | None = None
        self._followers: list[asyncio.Queue[Event]] = []

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise BrokerUnavailable(f"cannot open the ticker database {self.path}: {exc}") from exc
        self._db = db
        for edition in self.editions:
            self._ensure_epoch(edition)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise BrokerUnavailable("the embedded broker is not started")
        return self._db

    async def ping(self) -> None:
        try:
            self.db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"the ticker database {self.path} fails: {exc}") from exc

    def _ensure_epoch(self, edition: str) -> tuple[str, int]:
        self.db.execute(
            "INSERT OR IGNORE INTO meta (edition, epoch, offset) VALUES (?, ?, 0)",
            (edition, secrets.token_hex(4)),
        )
        epoch, offset = self.db.execute(
            "SELECT epoch, offset FROM meta WHERE edition = ?", (edition,)
        ).fetchone()
        return epoch, offset

    async def publish(self, change: Change) -> Published:
        item = change.item
        idem_key = f"{item.edition}:{change.idempotency_key}" if change.idempotency_key else None
        try:
            with self._transaction() as db:
                if idem_key is not None:
                    replay = self._idempotent_replay(db, idem_key, change.fingerprint)
                    if replay is not None:
                        return Published(replay, None, replayed=True)
                self._check_version(db, change)
                epoch, offset = self._ensure_epoch(item.edition)
                offset += 1
                cursor = Cursor(epoch, offset)
                payload = event_payload(
                    cursor, event_body(change.kind, item.edition, item.to_json())
                )
                self._store(db, change, offset, payload)
                if idem_key is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?)",
                        (
                            idem_key,
                            change.fingerprint,
                            item.to_json(),
                            time.time() + self.idempotency_seconds,
                        ),
                    )
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"the ticker database {self.path} fails: {exc}") from exc
        event = Event(item.edition, cursor, change.kind, item.to_dict(), payload)
        for queue in self._followers:
            queue.put_nowait(event)
        return Published(item, cursor)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def _idempotent_replay(self, db: sqlite3.Connection, key: str, fingerprint: str) -> Item | None:
        row = db.execute(
            "SELECT fingerprint, item FROM idempotency WHERE key = ? AND expires_at > ?",
            (key, time.time()),
        ).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise IdempotencyMismatch("this Idempotency-Key was used for a different request")
        return Item.from_dict(json.loads(row[1]))

    def _check_version(self, db: sqlite3.Connection, change: Change) -> None:
        row = db.execute("SELECT json FROM items WHERE id = ?", (change.item.id,)).fetchone()
        current = json.loads(row[0])["version"] if row else None
        if change.kind == "posted":
            if current is not None:
                raise VersionConflict(change.item.id, current)
        elif current is None or current != change.expected_version:
            raise VersionConflict(change.item.id, current)

    def _store(self, db: sqlite3.Connection, change: Change, offset: int, payload: bytes) -> None:
        item = change.item
        if change.kind in ("posted", "corrected"):
            db.execute(
                "INSERT OR REPLACE INTO items (id, edition, json, expires_ms) VALUES (?, ?, ?, ?)",
                (item.id, item.edition, item.to_json(), _expiry_ms(item)),
            )
        else:
            db.execute("DELETE FROM items WHERE id = ?", (item.id,))
        db.execute("UPDATE meta SET offset = ? WHERE edition = ?", (offset, item.edition))
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)", (item.edition, offset, payload, item.editor)
        )
        db.execute(
            "DELETE FROM events WHERE edition = ? AND offset <= ?",
            (item.edition, offset - self.history),
        )
        if offset % 100 == 0:
            db.execute("DELETE FROM idempotency WHERE expires_at <= ?", (time.time(),))

    async def get(self, item_id: str) -> Item | None:
        if edition_of(item_id) not in self.editions:
            return None
        row = self.db.execute("SELECT json FROM items WHERE id = ?", (item_id,)).fetchone()
        return Item.from_dict(json.loads(row[0])) if row else None

    async def state(self, edition: str) -> EditionState:
        return self._state(edition)

    async def live(self, edition: str) -> tuple[Cursor, list[dict[str, Any]]]:
        return self._live(edition)

    def _live(self, edition: str) -> tuple[Cursor, list[dict[str, Any]]]:
        epoch, offset = self._ensure_epoch(edition)
        items = [
            json.loads(row[0])
            for row in self.db.execute("SELECT json FROM items WHERE edition = ?", (edition,))
        ]
        return Cursor(epoch, offset), items

    def _state(self, edition: str) -> EditionState:
        cursor, items = self._live(edition)
        events = [
            Event.from_payload(row[0])
            for row in self.db.execute(
                "SELECT payload FROM events WHERE edition = ? ORDER BY offset", (edition,)
            )
        ]
        return EditionState(edition, cursor.epoch, cursor.offset, items, events)

    async def due(self, now: datetime, limit: int = 100) -> list[Item]:
        rows = self.db.execute(
            "SELECT json FROM items WHERE expires_ms IS NOT NULL AND expires_ms <= ? LIMIT ?",
            (int(now.timestamp() * 1000), limit),
        )
        return [Item.from_dict(json.loads(row[0])) for row in rows]

    async def follow(self, editions: tuple[str, ...]) -> AsyncIterator[EditionState | Event]:
        # Registering and reading state happen with no await between them, so no event
        # can fall between the state and the first live event.
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._followers.append(queue)
        try:
            states = [self._state(edition) for edition in editions]
            for state in states:
                yield state
            wanted = set(editions)
            while True:
                event = await queue.get()
                if event.edition in wanted:
                    yield event
        finally:
            self._followers.remove(queue)

    @property
    def tokens(self) -> TokenStore:
        return _EmbeddedTokens(self)


class _EmbeddedTokens(TokenStore):
    def __init__(self, broker: EmbeddedBroker) -> None:
        self._broker = broker

    async def add(self, name: str, digest: str, created: str) -> None:
        try:
            with self._broker._transaction() as db:
                db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (name, digest, created))
        except sqlite3.IntegrityError:
            raise BrokerError(f"a token named {name!r} exists already") from None

    async def owner(self, digest: str) -> str | None:
        db = self._broker.db
        row = db.execute("SELECT name FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return row[0] if row else None

    async def names(self) -> list[tuple[str, str]]:
        rows = self._broker.db.execute("SELECT name, created FROM tokens ORDER BY name")
        return [(name, created) for name, created in rows]

    async def revoke(self, name: str) -> bool:
        with self._broker._transaction() as db:
            return db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount > 0


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: a publish is all or nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
