"""The embedded broker: one process, durable in a local SQLite file.

It is what `ticker serve` runs on, so a newcomer needs nothing but Python. A restart keeps
the live ticker and the resume history, because both are in the file. Each publish is one
SQLite transaction, and followers are fed in the same step, so history and live events
never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .. import audit as trail
from ..archive import (
    PRUNE_BATCH,
    SCAN_BUDGET,
    ArchivePage,
    ArchiveQuery,
    page_of,
    record_key,
    record_terms,
)
from ..audit import AuditEntry, AuditPage, AuditQuery, AuditQueryError
from ..events import UPSERT_KINDS, Cursor, EditionState, Event, event_body, event_payload
from ..items import Item, edition_of, parse_time
from .base import (
    AuditLog,
    Broker,
    BrokerError,
    BrokerMisconfigured,
    BrokerUnavailable,
    Change,
    IdempotencyMismatch,
    PinLimitReached,
    Published,
    TokenRecord,
    TokenStore,
    VersionConflict,
    replayed_item,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# An idempotency record keeps what a replay needs, not a copy of the item: the item as
# first published is found live or in the log (see base.replayed_item).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (edition TEXT PRIMARY KEY, epoch TEXT NOT NULL,
    offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, edition TEXT NOT NULL,
    json TEXT NOT NULL, expires_ms INTEGER);
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (edition TEXT NOT NULL, offset INTEGER NOT NULL,
    payload BLOB NOT NULL, editor TEXT NOT NULL, PRIMARY KEY (edition, offset));
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
    item_id TEXT NOT NULL, version INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retired_tokens (digest TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL, edition TEXT, item TEXT, actor TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE INDEX IF NOT EXISTS audit_item ON audit (item) WHERE item IS NOT NULL;
CREATE TABLE IF NOT EXISTS scheduled (id TEXT PRIMARY KEY, edition TEXT NOT NULL,
    json TEXT NOT NULL, due_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (due_ms);
CREATE TABLE IF NOT EXISTS archive (id TEXT PRIMARY KEY, edition TEXT NOT NULL,
    key TEXT NOT NULL, version INTEGER NOT NULL, terms TEXT NOT NULL, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS archive_by_key ON archive (edition, key);
CREATE TABLE IF NOT EXISTS archive_terms (edition TEXT NOT NULL, term TEXT NOT NULL,
    key TEXT NOT NULL, PRIMARY KEY (edition, term, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive_backfilled (edition TEXT PRIMARY KEY);
"""

# Tokens made before roles existed have none of these: NULL roles is a legacy token.
_TOKEN_COLUMNS = {
    "roles": "TEXT",
    "editions": "TEXT",
    "expires": "TEXT",
    "last_used": "TEXT",
    "revoked": "INTEGER NOT NULL DEFAULT 0",
}
# The audit trail is pruned at most this often (seconds), on the expiry sweeper's reads.
_PRUNE_EVERY = 3600.0

# Records written before they were slimmed down held the whole item.
_SLIM_IDEMPOTENCY = """
CREATE TABLE idempotency_slim (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
    item_id TEXT NOT NULL, version INTEGER NOT NULL, expires_at REAL NOT NULL);
INSERT INTO idempotency_slim SELECT key, fingerprint, json_extract(item, '$.id'),
    json_extract(item, '$.version'), expires_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_slim RENAME TO idempotency;
"""

# Every this many publishes: drop expired idempotency records and give free pages back.
_MAINTENANCE_EVERY = 100
# Free pages tolerated before the file is shrunk (4 KiB pages: 256 KiB).
_FREE_PAGES_KEPT = 64
# How often ping() runs a full integrity check, in seconds; every other ping is cheap.
_CHECK_EVERY = 60.0

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_RESTORE_HINT = (
    "stop ticker, then restore the file from a backup, or move it (and its -wal and -shm "
    "files) away to start an empty ticker"
)


def _expiry_ms(item: Item) -> int | None:
    return int(parse_time(item.expires).timestamp() * 1000) if item.expires else None


def _ms(when: str) -> int:
    return int(parse_time(when).timestamp() * 1000)


def _damaged(exc: sqlite3.Error) -> bool:
    """The file is not a sound SQLite database (as opposed to busy, full or unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError


def _first_problem(db: sqlite3.Connection) -> str | None:
    """What `PRAGMA quick_check` finds first, or None when it finds nothing. It reads every
    page but does not compare indexes to their tables: some 25 ms for a 10 MB file in the
    page cache."""
    found = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    if found == "ok":
        return None
    lines = [line.strip() for line in found.splitlines() if line.strip() and "***" not in line]
    return lines[0] if lines else found.strip()


class EmbeddedBroker(Broker):
    """`exclusive=True` is for the serving process (`ticker serve`): it holds a lock on
    `<db>.lock` for its lifetime, and a second server on the same file is refused. Short
    lived commands (`ticker token ...`) leave it False and work while a server runs; their
    transactions are short, and both sides wait for the other's (`busy_timeout`)."""

    def __init__(
        self,
        path: Path | str,
        *,
        editions: tuple[str, ...],
        history: int = 1000,
        idempotency_seconds: int = 86400,
        exclusive: bool = False,
        busy_timeout: float = 2.0,
        audit_days: int = 90,
    ) -> None:
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a whole number of at least 1, not {history!r}")
        if idempotency_seconds <= 0:
            raise ValueError(f"idempotency_seconds must be positive, not {idempotency_seconds!r}")
        self.path = Path(path)
        self.editions = editions
        self.history = history
        self.idempotency_seconds = idempotency_seconds
        self.exclusive = exclusive
        self.busy_timeout = busy_timeout
        self.audit_days = audit_days
        self._pruned = float("-inf")
        self._db: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._followers: list[asyncio.Queue[Event]] = []
        self._broken: str | None = None
        self._checked = 0.0
        self._publishes = 0

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    async def start(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot open the ticker database {self.path}: {exc}") from exc
        if self.exclusive:
            self._take_lock()
        try:
            self._db = self._open()
            self._broken = None
            with self._guard():
                for edition in self.editions:
                    self._ensure_epoch(edition)
                    self._backfill(edition)
        except BaseException:
            self._release()
            raise
        self._broken = None
        self._checked = time.monotonic()

    def _take_lock(self) -> None:
        if fcntl is None:
            return
        try:
            lock = self.lock_path.open("ab")
        except OSError as exc:
            raise BrokerUnavailable(f"cannot create the lock file {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise BrokerMisconfigured(
                f"the ticker database {self.path} is in use by another ticker server "
                f"(it holds {self.lock_path}): stop that one first, or give this one "
                "another --db"
            ) from None
        self._lock = lock

    def _open(self) -> sqlite3.Connection:
        """Open, check and prepare the file; a damaged one is refused, with what to do."""
        empty = self.path.exists() and self.path.stat().st_size == 0
        if empty:
            log.warning(
                "the ticker database %s is an empty file: starting a new ticker in it "
                "(a new epoch; readers will reset)",
                self.path,
            )
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            fresh = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0
            problem = _first_problem(db)
            if problem is not None:
                raise BrokerMisconfigured(
                    f"the ticker database {self.path} is damaged ({problem}): " + _RESTORE_HINT
                )
            if fresh:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._migrate(db)
            return db
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if _damaged(exc):
                raise BrokerMisconfigured(
                    f"the ticker database {self.path} is damaged or not a ticker database "
                    f"({exc}): " + _RESTORE_HINT
                ) from None
            raise BrokerUnavailable(f"cannot open the ticker database {self.path}: {exc}") from exc
        except BaseException:
            if db is not None:
                db.close()
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        token_columns = {row[1] for row in db.execute("PRAGMA table_info(tokens)")}
        for column, kind in _TOKEN_COLUMNS.items():
            if column not in token_columns:
                db.execute(f"ALTER TABLE tokens ADD COLUMN {column} {kind}")
        columns = {row[1] for row in db.execute("PRAGMA table_info(idempotency)")}
        if "item" in columns:
            with _Transaction(db):
                for statement in _SLIM_IDEMPOTENCY.split(";"):
                    db.execute(statement)
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # A file made before the store could shrink: one VACUUM rewrites it (about half
            # a second per 10 MB), and from then on freed pages are given back as it runs.
            log.info("compacting the ticker database %s once, so it can shrink", self.path)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            try:
                db.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                log.warning("could not compact %s, trying again next start: %s", self.path, exc)

    def _release(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    async def close(self) -> None:
        self._release()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise BrokerUnavailable("the embedded broker is not started")
        return self._db

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Every database error becomes BrokerUnavailable; a damaged file says so, and
        stays marked damaged, so readiness fails until it is repaired."""
        if self._broken is not None:
            raise BrokerUnavailable(self._broken)
        try:
            yield
        except sqlite3.Error as exc:
            if _damaged(exc):
                self._broken = (
                    f"the ticker database {self.path} is damaged ({exc}): " + _RESTORE_HINT
                )
                log.error("%s", self._broken)
                raise BrokerUnavailable(self._broken) from exc
            raise BrokerUnavailable(f"the ticker database {self.path} fails: {exc}") from exc

    async def ping(self) -> None:
        with self._guard():
            self.db.execute("SELECT count(*) FROM meta").fetchone()
            if time.monotonic() - self._checked > _CHECK_EVERY:
                self._checked = time.monotonic()
                problem = _first_problem(self.db)
                if problem is not None:
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {problem}")

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
        data = item.to_dict()  # once: the stored row, the event and the followers share it
        item_json = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._guard(), self._transaction() as db:
            if idem_key is not None:
                replay = self._idempotent_replay(db, idem_key, change.fingerprint)
                if replay is not None:
                    return Published(replay, None, replayed=True)
            self._check_version(db, change)
            epoch, offset = self._ensure_epoch(item.edition)
            offset += 1
            cursor = Cursor(epoch, offset)
            payload = event_payload(cursor, event_body(change.kind, item.edition, item_json))
            self._store(db, change, offset, payload, item_json)
            _append(db, change.audit or trail.for_change(change.kind, item))
            if idem_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (
                        idem_key,
                        change.fingerprint,
                        item.id,
                        item.version,
                        time.time() + self.idempotency_seconds,
                    ),
                )
        self._publishes += 1
        if self._publishes % _MAINTENANCE_EVERY == 0:
            self._maintain()
        event = Event(item.edition, cursor, change.kind, data, payload)
        for queue in self._followers:
            queue.put_nowait(event)
        return Published(item, cursor)

    def _maintain(self) -> None:
        """Drop expired idempotency records, and give free pages back to the file system
        once there are enough of them (trimmed history, withdrawn items)."""
        db = self.db
        try:
            with self._transaction():
                db.execute("DELETE FROM idempotency WHERE expires_at <= ?", (time.time(),))
            if db.execute("PRAGMA freelist_count").fetchone()[0] > _FREE_PAGES_KEPT:
                # Each step frees one page: executescript steps it to the end.
                db.executescript("PRAGMA incremental_vacuum;")
                # The file itself shrinks at the next checkpoint (SQLite's automatic one).
        except sqlite3.Error as exc:  # the publish is done; this waits for the next round
            log.warning("upkeep of the ticker database %s failed: %s", self.path, exc)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def _idempotent_replay(self, db: sqlite3.Connection, key: str, fingerprint: str) -> Item | None:
        """The item a request with this key already made, or None for a new key. The item
        may be live, scheduled or gone."""
        row = db.execute(
            "SELECT fingerprint, item_id, version FROM idempotency"
            " WHERE key = ? AND expires_at > ?",
            (key, time.time()),
        ).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise IdempotencyMismatch("this Idempotency-Key was used for a different request")
        item_id, version = row[1], row[2]
        live = db.execute(
            "SELECT json FROM items WHERE id = ? UNION ALL SELECT json FROM scheduled WHERE id = ?",
            (item_id, item_id),
        ).fetchone()
        live_item = Item.from_dict(json.loads(live[0])) if live else None
        history: list[bytes] = []
        if live_item is None or live_item.version != version:
            history = [
                payload
                for (payload,) in db.execute(
                    "SELECT payload FROM events WHERE edition = ? AND instr(payload, ?) > 0"
                    " ORDER BY offset DESC",
                    (edition_of(item_id), json.dumps(item_id)),
                )
            ]
        return replayed_item(item_id, version, live_item, history)

    def _check_version(self, db: sqlite3.Connection, change: Change) -> None:
        row = db.execute("SELECT json FROM items WHERE id = ?", (change.item.id,)).fetchone()
        current = json.loads(row[0])["version"] if row else None
        if change.kind == "posted":
            if current is not None:
                raise VersionConflict(change.item.id, current)
        elif current is None or current != change.expected_version:
            raise VersionConflict(change.item.id, current)
        if change.scheduled_version is not None:
            waiting = self._scheduled_version(db, change.item.id)
            if waiting != change.scheduled_version:
                raise VersionConflict(change.item.id, waiting)
        item = change.item
        if change.kind in UPSERT_KINDS and item.pinned and change.max_pinned is not None:
            (pinned,) = db.execute(
                "SELECT count(*) FROM items WHERE edition = ? AND id <> ?"
                " AND json_extract(json, '$.pinned') = 1",
                (item.edition, item.id),
            ).fetchone()
            if pinned >= change.max_pinned:
                raise PinLimitReached(item.edition, change.max_pinned)

    def _scheduled_version(self, db: sqlite3.Connection, item_id: str) -> int | None:
        row = db.execute("SELECT json FROM scheduled WHERE id = ?", (item_id,)).fetchone()
        return json.loads(row[0])["version"] if row else None

    def _store(
        self, db: sqlite3.Connection, change: Change, offset: int, payload: bytes, item_json: str
    ) -> None:
        item = change.item
        if change.kind in ("posted", "corrected"):
            db.execute(
                "INSERT OR REPLACE INTO items (id, edition, json, expires_ms) VALUES (?, ?, ?, ?)",
                (item.id, item.edition, item_json, _expiry_ms(item)),
            )
        else:
            db.execute("DELETE FROM items WHERE id = ?", (item.id,))
        if change.scheduled_version is not None:
            db.execute("DELETE FROM scheduled WHERE id = ?", (item.id,))
        db.execute("UPDATE meta SET offset = ? WHERE edition = ?", (offset, item.edition))
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)", (item.edition, offset, payload, item.editor)
        )
        db.execute(
            "DELETE FROM events WHERE edition = ? AND offset <= ?",
            (item.edition, offset - self.history),
        )
        _archive(db, item.to_dict(), item_json)

    async def get(self, item_id: str) -> Item | None:
        if edition_of(item_id) not in self.editions:
            return None
        with self._guard():
            row = self.db.execute("SELECT json FROM items WHERE id = ?", (item_id,)).fetchone()
        return Item.from_dict(json.loads(row[0])) if row else None

    async def state(self, edition: str) -> EditionState:
        with self._guard():
            return self._state(edition)

    async def live(self, edition: str) -> tuple[Cursor, list[dict[str, Any]]]:
        with self._guard():
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
        if time.monotonic() - self._pruned > _PRUNE_EVERY:  # on the sweeper's schedule
            self._pruned = time.monotonic()
            await self.audit.prune(datetime.now(UTC))  # by the clock, not `now`
        with self._guard():
            rows = self.db.execute(
                "SELECT json FROM items WHERE expires_ms IS NOT NULL AND expires_ms <= ?"
                " ORDER BY expires_ms LIMIT ?",
                (int(now.timestamp() * 1000), limit),
            ).fetchall()
        return [Item.from_dict(json.loads(row[0])) for row in rows]

    async def cursor(self, edition: str) -> Cursor:
        with self._guard():
            return Cursor(*self._ensure_epoch(edition))

    async def next_expiry(self) -> datetime | None:
        with self._guard():
            row = self.db.execute(
                "SELECT min(expires_ms) FROM items WHERE expires_ms IS NOT NULL"
            ).fetchone()
        return None if row[0] is None else datetime.fromtimestamp(row[0] / 1000, UTC)

    # --- scheduled items -------------------------------------------------------------------

    async def schedule(
        self,
        item: Item,
        expected_version: int | None = None,
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Published:
        idem_key = f"{item.edition}:{idempotency_key}" if idempotency_key else None
        if item.publish_at is None:
            raise ValueError("a scheduled item needs publish_at")
        with self._guard(), self._transaction() as db:
            if idem_key is not None:
                replay = self._idempotent_replay(db, idem_key, fingerprint)
                if replay is not None:
                    return Published(replay, None, replayed=True)
            waiting = self._scheduled_version(db, item.id)
            if expected_version is None:
                live = db.execute("SELECT json FROM items WHERE id = ?", (item.id,)).fetchone()
                if waiting is not None or live is not None:
                    raise VersionConflict(item.id, waiting or json.loads(live[0])["version"])
            elif waiting != expected_version:
                raise VersionConflict(item.id, waiting)
            db.execute(
                "INSERT OR REPLACE INTO scheduled (id, edition, json, due_ms) VALUES (?, ?, ?, ?)",
                (item.id, item.edition, item.to_json(), _ms(item.publish_at)),
            )
            if idem_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (
                        idem_key,
                        fingerprint,
                        item.id,
                        item.version,
                        time.time() + self.idempotency_seconds,
                    ),
                )
        return Published(item, None)

    async def unschedule(self, item_id: str, expected_version: int) -> None:
        with self._guard(), self._transaction() as db:
            waiting = self._scheduled_version(db, item_id)
            if waiting != expected_version:
                raise VersionConflict(item_id, waiting)
            db.execute("DELETE FROM scheduled WHERE id = ?", (item_id,))

    async def get_scheduled(self, item_id: str) -> Item | None:
        with self._guard():
            row = self.db.execute("SELECT json FROM scheduled WHERE id = ?", (item_id,)).fetchone()
        return Item.from_dict(json.loads(row[0])) if row else None

    async def scheduled(self, edition: str) -> list[Item]:
        with self._guard():
            rows = self.db.execute(
                "SELECT json FROM scheduled WHERE edition = ? ORDER BY due_ms, id", (edition,)
            ).fetchall()
        return [Item.from_dict(json.loads(row[0])) for row in rows]

    async def due_scheduled(self, now: datetime, limit: int = 100) -> list[Item]:
        with self._guard():
            rows = self.db.execute(
                "SELECT json FROM scheduled WHERE due_ms <= ? ORDER BY due_ms, id LIMIT ?",
                (int(now.timestamp() * 1000), limit),
            ).fetchall()
        return [Item.from_dict(json.loads(row[0])) for row in rows]

    async def next_scheduled(self) -> datetime | None:
        with self._guard():
            row = self.db.execute("SELECT min(due_ms) FROM scheduled").fetchone()
        return None if row[0] is None else datetime.fromtimestamp(row[0] / 1000, UTC)

    async def follow(self, editions: tuple[str, ...]) -> AsyncIterator[EditionState | Event]:
        # Registering and reading state happen with no await between them, so no event
        # can fall between the state and the first live event.
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._followers.append(queue)
        try:
            with self._guard():
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

    def _backfill(self, edition: str) -> None:
        """Archive what a store written before the archive holds: the items in the retained
        history, then the live ones. Once per edition (a row marks it done); a record already
        at the same or a newer version is left as it is."""
        db = self.db
        done = "SELECT 1 FROM archive_backfilled WHERE edition = ?"
        if db.execute(done, (edition,)).fetchone():
            return
        with _Transaction(db):
            if db.execute(done, (edition,)).fetchone():
                return
            rows = db.execute(
                "SELECT payload FROM events WHERE edition = ? ORDER BY offset", (edition,)
            ).fetchall()
            for (payload,) in rows:
                item = Event.from_payload(payload).item
                if {"id", "created", "version", "status", "editor"} <= item.keys():
                    _archive(db, item, json.dumps(item, ensure_ascii=False, separators=(",", ":")))
            for (item_json,) in db.execute(
                "SELECT json FROM items WHERE edition = ?", (edition,)
            ).fetchall():
                _archive(db, json.loads(item_json), item_json)
            db.execute("INSERT INTO archive_backfilled VALUES (?)", (edition,))

    async def archive(self, query: ArchiveQuery) -> ArchivePage:
        with self._guard():
            keys, after = self._archive_keys(query)
            if not keys:
                return ArchivePage([], after)
            marks = ",".join("?" * len(keys))
            stored = dict(
                self.db.execute(
                    f"SELECT key, json FROM archive WHERE edition = ? AND key IN ({marks})",
                    (query.edition, *keys),
                ).fetchall()
            )
        return ArchivePage([json.loads(stored[key]) for key in keys if key in stored], after)

    def _archive_keys(self, query: ArchiveQuery) -> tuple[list[str], str | None]:
        """The keys of one page: the rarest term drives (or the whole archive, without
        terms), the other terms are checked per key, within the scan budget."""
        db, edition = self.db, query.edition
        terms = sorted(query.terms, key=lambda term: self._term_size(edition, term))
        bounds, args = "", []
        if query.below is not None:
            bounds += " AND key < ?"
            args.append(query.below)
        if query.at_least is not None:
            bounds += " AND key >= ?"
            args.append(query.at_least)
        if terms:
            window = (
                "SELECT key FROM archive_terms WHERE edition = ? AND term = ?"
                f"{bounds} ORDER BY key DESC LIMIT ?"
            )
            window_args = [edition, terms[0], *args, SCAN_BUDGET]
        else:
            window = f"SELECT key FROM archive WHERE edition = ?{bounds} ORDER BY key DESC LIMIT ?"
            window_args = [edition, *args, SCAN_BUDGET]
        checks = "".join(
            " AND EXISTS (SELECT 1 FROM archive_terms t WHERE t.edition = ? AND t.term = ?"
            " AND t.key = w.key)"
            for _ in terms[1:]
        )
        check_args = [value for term in terms[1:] for value in (edition, term)]
        found = [
            key
            for (key,) in db.execute(
                f"SELECT key FROM ({window}) w WHERE 1{checks} ORDER BY key DESC LIMIT ?",
                (*window_args, *check_args, query.limit + 1),
            )
        ]
        last_scanned = None
        if len(found) <= query.limit:
            scanned, lowest = db.execute(
                f"SELECT count(*), min(key) FROM ({window})", window_args
            ).fetchone()
            if scanned >= SCAN_BUDGET:
                last_scanned = lowest
        return page_of(found, query.limit, last_scanned)

    def _term_size(self, edition: str, term: str) -> int:
        """How many records a term holds, counted up to the scan budget: enough to choose
        the rarest term, at a bounded cost."""
        return self.db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM archive_terms WHERE edition = ? AND term = ?"
            " LIMIT ?)",
            (edition, term, SCAN_BUDGET + 1),
        ).fetchone()[0]

    async def prune_archive(self, edition: str, before: str) -> int:
        removed, after = 0, ""
        while True:
            with self._guard(), self._transaction() as db:
                rows = db.execute(
                    "SELECT id, key, terms FROM archive WHERE edition = ? AND key > ?"
                    " AND key < ? ORDER BY key LIMIT ?",
                    (edition, after, before, PRUNE_BATCH),
                ).fetchall()
                for item_id, key, terms in rows:
                    kept = json.loads(terms)
                    if "s:live" in kept:
                        continue
                    db.executemany(
                        "DELETE FROM archive_terms WHERE edition = ? AND term = ? AND key = ?",
                        [(edition, term, key) for term in kept],
                    )
                    db.execute("DELETE FROM archive WHERE id = ?", (item_id,))
                    removed += 1
            if len(rows) < PRUNE_BATCH:
                self._maintain()  # the pages it freed go back to the file system now
                return removed
            after = rows[-1][1]

    @property
    def tokens(self) -> TokenStore:
        return _EmbeddedTokens(self)

    @property
    def audit(self) -> AuditLog:
        return _EmbeddedAudit(self)


def _append(db: sqlite3.Connection, entry: AuditEntry) -> None:
    """Write an audit entry in the caller's transaction."""
    db.execute(
        "INSERT INTO audit (at_ms, edition, item, actor, body) VALUES (?, ?, ?, ?, ?)",
        (int(time.time() * 1000), entry.edition, entry.item, entry.actor, entry.body_json()),
    )


def _json_list(value: tuple[str, ...] | None) -> str | None:
    return None if value is None else json.dumps(list(value))


def _tuple(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(json.loads(value))


def _archive(db: sqlite3.Connection, item: dict[str, Any], item_json: str) -> None:
    """Keep the item's latest version in the archive, with its terms; an older version
    than the one archived changes nothing. Editors are never taken off a record: the
    archive finds an item by everyone who changed it. The record lists its terms, so a
    change or a prune takes back exactly those."""
    edition, key = item["edition"], record_key(item)
    row = db.execute("SELECT version, terms FROM archive WHERE id = ?", (item["id"],)).fetchone()
    terms = record_terms(item)
    if row is not None:
        if row[0] >= item["version"]:
            return
        old = json.loads(row[1])
        terms += [term for term in old if term.startswith("e:") and term not in terms]
        db.executemany(
            "DELETE FROM archive_terms WHERE edition = ? AND term = ? AND key = ?",
            [(edition, term, key) for term in set(old) - set(terms)],
        )
    db.execute(
        "INSERT OR REPLACE INTO archive (id, edition, key, version, terms, json)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            item["id"],
            edition,
            key,
            item["version"],
            json.dumps(terms, ensure_ascii=False),
            item_json,
        ),
    )
    db.executemany(
        "INSERT OR IGNORE INTO archive_terms VALUES (?, ?, ?)",
        [(edition, term, key) for term in terms],
    )


class _EmbeddedTokens(TokenStore):
    _COLUMNS = "name, digest, created, roles, editions, expires, last_used, revoked"

    def __init__(self, broker: EmbeddedBroker) -> None:
        self._broker = broker

    def _record(self, row: tuple[Any, ...]) -> TokenRecord:
        name, digest, created, roles, editions, expires, last_used, revoked = row
        return TokenRecord(
            name,
            digest,
            created,
            _tuple(roles),
            _tuple(editions),
            expires,
            last_used,
            bool(revoked),
        )

    async def add(
        self,
        name: str,
        digest: str,
        created: str,
        *,
        roles: tuple[str, ...] | None = None,
        editions: tuple[str, ...] | None = None,
        expires: str | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        with self._broker._guard(), self._broker._transaction() as db:
            row = db.execute(
                "SELECT digest, revoked FROM tokens WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and not row[1]:
                raise BrokerError(f"a token named {name!r} exists already")
            self._fresh(db, digest)
            if row is not None:  # a revoked name given again: its old secret stays revoked
                self._retire(db, name, row[0])
                db.execute("DELETE FROM tokens WHERE name = ?", (name,))
            try:
                db.execute(
                    f"INSERT INTO tokens ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
                    (name, digest, created, _json_list(roles), _json_list(editions), expires),
                )
            except sqlite3.IntegrityError:
                raise BrokerError("this token secret is in use already") from None
            _append(db, audit or trail.for_token("token.created", name))

    def _fresh(self, db: sqlite3.Connection, digest: str) -> None:
        """A secret is never given twice, not even one that was revoked."""
        if db.execute("SELECT 1 FROM retired_tokens WHERE digest = ?", (digest,)).fetchone():
            raise BrokerError("this token secret is in use already")

    def _retire(self, db: sqlite3.Connection, name: str, digest: str) -> None:
        db.execute("INSERT OR REPLACE INTO retired_tokens VALUES (?, ?)", (digest, name))

    async def lookup(self, digest: str) -> TokenRecord | None:
        with self._broker._guard():
            db = self._broker.db
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM tokens WHERE digest = ?", (digest,)
            ).fetchone()
            if row is not None:
                return self._record(row)
            retired = db.execute(
                "SELECT name FROM retired_tokens WHERE digest = ?", (digest,)
            ).fetchone()
        return None if retired is None else TokenRecord(retired[0], digest, "", revoked=True)

    async def records(self) -> list[TokenRecord]:
        with self._broker._guard():
            rows = self._broker.db.execute(
                f"SELECT {self._COLUMNS} FROM tokens WHERE revoked = 0 ORDER BY name"
            ).fetchall()
        return [self._record(row) for row in rows]

    async def revoke(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        with self._broker._guard(), self._broker._transaction() as db:
            done = (
                db.execute(
                    "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0", (name,)
                ).rowcount
                > 0
            )
            if done:
                _append(db, audit or trail.for_token("token.revoked", name))
        return done

    async def rotate(self, name: str, digest: str, *, audit: AuditEntry | None = None) -> bool:
        with self._broker._guard(), self._broker._transaction() as db:
            row = db.execute(
                "SELECT digest FROM tokens WHERE name = ? AND revoked = 0", (name,)
            ).fetchone()
            if row is None:
                return False
            self._fresh(db, digest)
            self._retire(db, name, row[0])
            try:
                db.execute("UPDATE tokens SET digest = ? WHERE name = ?", (digest, name))
            except sqlite3.IntegrityError:
                raise BrokerError("this token secret is in use already") from None
            _append(db, audit or trail.for_token("token.rotated", name))
        return True

    async def migrate(
        self,
        name: str,
        roles: tuple[str, ...],
        editions: tuple[str, ...] | None,
        *,
        audit: AuditEntry | None = None,
    ) -> bool:
        with self._broker._guard(), self._broker._transaction() as db:
            done = (
                db.execute(
                    "UPDATE tokens SET roles = ?, editions = ?"
                    " WHERE name = ? AND revoked = 0 AND roles IS NULL",
                    (_json_list(roles), _json_list(editions), name),
                ).rowcount
                > 0
            )
            if done:
                _append(db, audit or trail.for_token("token.migrated", name))
        return done

    async def touch(self, name: str, when: str) -> None:
        with self._broker._guard():
            self._broker.db.execute("UPDATE tokens SET last_used = ? WHERE name = ?", (when, name))


class _EmbeddedAudit(AuditLog):
    def __init__(self, broker: EmbeddedBroker) -> None:
        self._broker = broker

    async def record(self, entry: AuditEntry) -> None:
        with self._broker._guard(), self._broker._transaction() as db:
            _append(db, entry)

    async def query(self, query: AuditQuery, now: datetime) -> AuditPage:
        oldest = trail.cutoff(now, self._broker.audit_days)
        if query.since is not None and query.since > oldest:
            oldest = query.since
        where, args = ["at_ms >= ?"], [int(oldest.timestamp() * 1000)]
        if query.until is not None:
            where.append("at_ms <= ?")
            args.append(int(query.until.timestamp() * 1000))
        for column, value in (
            ("item", query.item),
            ("actor", query.editor),
            ("edition", query.edition),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.cursor is not None:
            position = trail.decode_cursor(query.cursor)
            if position[0] != "s" or len(position) != 2 or not isinstance(position[1], int):
                raise AuditQueryError("cursor", "not a cursor from an earlier answer")
            where.append("id < ?")
            args.append(position[1])
        with self._broker._guard():
            rows = self._broker.db.execute(
                f"SELECT id, at_ms, body FROM audit WHERE {' AND '.join(where)}"
                " ORDER BY id DESC LIMIT ?",
                (*args, query.limit + 1),
            ).fetchall()
        entries = [
            AuditEntry.from_body(json.loads(body), id=str(id_), at=trail.at_iso(at_ms))
            for id_, at_ms, body in rows[: query.limit]
        ]
        more = len(rows) > query.limit
        cursor = trail.encode_cursor(["s", rows[query.limit - 1][0]]) if more else None
        return AuditPage(entries, cursor)

    async def prune(self, now: datetime) -> int:
        oldest = trail.cutoff(now, self._broker.audit_days)
        with self._broker._guard(), self._broker._transaction() as db:
            dropped = db.execute(
                "DELETE FROM audit WHERE at_ms < ?", (int(oldest.timestamp() * 1000),)
            ).rowcount
        if dropped:
            self._broker._maintain()  # the pages they held go back to the file system
        return dropped


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: a publish is all or nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # A failed statement may have ended the transaction already; the error that got
        # us here is the one to report.
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
