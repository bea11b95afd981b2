"""Where Web Push keeps its state, in the service's own store: the VAPID key pair, the
subscriptions, how far the delivery worker has read each edition's log, and which version
of each item each subscription has received.

One interface, two implementations: tables in the embedded SQLite file (on the broker's
own connection) and keys in Redis (on the broker's own client, under one hash tag so a
cluster keeps them together). tests/test_push_store.py holds both to the same behaviour.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker
from ..events import Cursor, parse_cursor
from .rules import Subscription

SENT_SECONDS = 8 * 24 * 3600  # longer than an item may live (7 days at most)


@dataclass(frozen=True, slots=True)
class VapidKeys:
    private_pem: str  # never leaves the service
    public_key: str  # base64url uncompressed point: the browser's applicationServerKey
    created: str


class PushStore(abc.ABC):
    @abc.abstractmethod
    async def keys(self) -> VapidKeys | None: ...

    @abc.abstractmethod
    async def set_keys(self, keys: VapidKeys, *, replace: bool = False) -> bool:
        """False (and nothing changed) when keys exist and `replace` is not set."""

    @abc.abstractmethod
    async def add(self, subscription: Subscription) -> None:
        """Add, or replace the one with the same endpoint."""

    async def add_many(self, subscriptions: Iterable[Subscription]) -> None:
        """Add many at once (an import, or a benchmark's hundred thousand)."""
        for subscription in subscriptions:
            await self.add(subscription)

    @abc.abstractmethod
    async def get(self, subscription_id: str) -> Subscription | None: ...

    @abc.abstractmethod
    async def remove(self, subscription_id: str) -> bool: ...

    @abc.abstractmethod
    async def subscriptions(self, edition: str) -> list[Subscription]: ...

    @abc.abstractmethod
    async def count(self) -> int: ...

    @abc.abstractmethod
    async def generation(self) -> int:
        """Changes whenever a subscription is added or removed: the worker reloads its copy
        of the subscriptions only then."""

    @abc.abstractmethod
    async def cursor(self, edition: str) -> Cursor | None:
        """Where delivery stands in the edition's log: every event up to it is done."""

    @abc.abstractmethod
    async def save_cursor(self, edition: str, cursor: Cursor) -> None: ...

    @abc.abstractmethod
    async def delivered(self, item_id: str) -> dict[str, int]:
        """Subscription id -> the newest version of the item it received."""

    @abc.abstractmethod
    async def mark_delivered(self, item_id: str, version: int, ids: Iterable[str]) -> None:
        """Record successes durably, before the cursor moves past them: a worker that
        restarts never sends the same version to the same subscription twice."""

    async def lease(self, owner: str, seconds: float) -> bool:
        """Whether `owner` may deliver now (taking or renewing the lease): one delivering
        process at a time. The embedded store has one serving process, which always may."""
        return True


def push_store_for(broker: Broker) -> PushStore:
    """The push store that lives beside this broker's data, on its connection."""
    from ..brokers.embedded import EmbeddedBroker

    if isinstance(broker, EmbeddedBroker):
        return SqlitePushStore(broker)
    from ..brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        return RedisPushStore(broker)
    inner = getattr(broker, "_broker", None) or getattr(broker, "broker", None)
    if isinstance(inner, Broker):
        return push_store_for(inner)
    raise TypeError(f"no push store for {type(broker).__name__}")


# --- SQLite -----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_pem TEXT NOT NULL, public_key TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id TEXT PRIMARY KEY, edition TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS push_subscriptions_edition ON push_subscriptions (edition);
CREATE TABLE IF NOT EXISTS push_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS push_delivered (
    item_id TEXT NOT NULL, subscription TEXT NOT NULL, version INTEGER NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (item_id, subscription)) WITHOUT ROWID;
"""


class SqlitePushStore(PushStore):
    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self._ready = False
        self._pruned = 0.0

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection = self._broker.db
        if not self._ready:
            db.executescript(_SCHEMA)
            self._ready = True
        return db

    async def keys(self) -> VapidKeys | None:
        with self._broker._guard():
            row = (
                self._db()
                .execute("SELECT private_pem, public_key, created FROM push_keys")
                .fetchone()
            )
        return None if row is None else VapidKeys(*row)

    async def set_keys(self, keys: VapidKeys, *, replace: bool = False) -> bool:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._broker._guard():
            db = self._db()
            with self._broker._transaction():
                cursor = db.execute(
                    f"{verb} INTO push_keys VALUES (1, ?, ?, ?)",
                    (keys.private_pem, keys.public_key, keys.created),
                )
        return cursor.rowcount > 0

    async def add(self, subscription: Subscription) -> None:
        with self._broker._guard():
            db = self._db()
            with self._broker._transaction():
                db.execute(
                    "INSERT OR REPLACE INTO push_subscriptions VALUES (?, ?, ?)",
                    (subscription.id, subscription.edition, subscription.to_json()),
                )
                self._bump(db)

    async def add_many(self, subscriptions: Iterable[Subscription]) -> None:
        rows = [(s.id, s.edition, s.to_json()) for s in subscriptions]
        with self._broker._guard():
            db = self._db()
            with self._broker._transaction():
                db.executemany("INSERT OR REPLACE INTO push_subscriptions VALUES (?, ?, ?)", rows)
                self._bump(db)

    def _bump(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO push_meta VALUES ('generation', '1') ON CONFLICT (name) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    async def get(self, subscription_id: str) -> Subscription | None:
        with self._broker._guard():
            row = (
                self._db()
                .execute("SELECT record FROM push_subscriptions WHERE id = ?", (subscription_id,))
                .fetchone()
            )
        return None if row is None else Subscription.from_json(row[0])

    async def remove(self, subscription_id: str) -> bool:
        with self._broker._guard():
            db = self._db()
            with self._broker._transaction():
                gone = (
                    db.execute(
                        "DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,)
                    ).rowcount
                    > 0
                )
                if gone:
                    self._bump(db)
        return gone

    async def subscriptions(self, edition: str) -> list[Subscription]:
        with self._broker._guard():
            rows = (
                self._db()
                .execute("SELECT record FROM push_subscriptions WHERE edition = ?", (edition,))
                .fetchall()
            )
        return [Subscription.from_json(row[0]) for row in rows]

    async def count(self) -> int:
        with self._broker._guard():
            return self._db().execute("SELECT count(*) FROM push_subscriptions").fetchone()[0]

    async def generation(self) -> int:
        with self._broker._guard():
            row = (
                self._db()
                .execute("SELECT value FROM push_meta WHERE name = 'generation'")
                .fetchone()
            )
        return 0 if row is None else int(row[0])

    async def cursor(self, edition: str) -> Cursor | None:
        with self._broker._guard():
            row = (
                self._db()
                .execute("SELECT value FROM push_meta WHERE name = ?", (f"cursor:{edition}",))
                .fetchone()
            )
        return None if row is None else parse_cursor(row[0])

    async def save_cursor(self, edition: str, cursor: Cursor) -> None:
        with self._broker._guard():
            self._db().execute(
                "INSERT OR REPLACE INTO push_meta VALUES (?, ?)", (f"cursor:{edition}", str(cursor))
            )

    async def delivered(self, item_id: str) -> dict[str, int]:
        with self._broker._guard():
            rows = (
                self._db()
                .execute(
                    "SELECT subscription, version FROM push_delivered WHERE item_id = ?",
                    (item_id,),
                )
                .fetchall()
            )
        return dict(rows)

    async def mark_delivered(self, item_id: str, version: int, ids: Iterable[str]) -> None:
        now = time.time()
        rows = [(item_id, sid, version, now) for sid in ids]
        if not rows:
            return
        with self._broker._guard():
            db = self._db()
            with self._broker._transaction():
                db.executemany(
                    "INSERT INTO push_delivered VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (item_id, subscription) DO UPDATE SET "
                    "version = max(version, excluded.version), at = excluded.at",
                    rows,
                )
                if now - self._pruned > 3600:
                    self._pruned = now
                    db.execute("DELETE FROM push_delivered WHERE at < ?", (now - SENT_SECONDS,))


# --- Redis ------------------------------------------------------------------------------------

_LEASE = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_MARK = """
for i = 3, #ARGV do
  local had = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[1]) > had then redis.call('HSET', KEYS[1], ARGV[i], ARGV[1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisPushStore(PushStore):
    """Every key under one hash tag (`{push}`), so a script may touch several of them on a
    cluster too."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        base = f"{broker.prefix}:{{push}}"
        self._keys = f"{base}:keys"
        self._subs = f"{base}:subscriptions"
        self._generation = f"{base}:generation"
        self._cursors = f"{base}:cursors"
        self._lease = f"{base}:lease"
        self._base = base
        redis = broker._redis
        self._lease_script = redis.register_script(_LEASE)
        self._mark_script = redis.register_script(_MARK)

    @property
    def _r(self) -> Any:
        return self._broker._redis

    def _edition(self, edition: str) -> str:
        return f"{self._base}:edition:{edition}"

    async def keys(self) -> VapidKeys | None:
        with self._broker._reachable():
            raw = await self._r.get(self._keys)
        return None if raw is None else VapidKeys(**json.loads(raw))

    async def set_keys(self, keys: VapidKeys, *, replace: bool = False) -> bool:
        record = json.dumps(
            {
                "private_pem": keys.private_pem,
                "public_key": keys.public_key,
                "created": keys.created,
            }
        )
        with self._broker._reachable():
            return bool(await self._r.set(self._keys, record, nx=not replace))

    async def add(self, subscription: Subscription) -> None:
        with self._broker._reachable():
            old = await self._r.hget(self._subs, subscription.id)
            pipe = self._r.pipeline(transaction=True)
            if old is not None:
                pipe.srem(self._edition(Subscription.from_json(old).edition), subscription.id)
            pipe.hset(self._subs, subscription.id, subscription.to_json())
            pipe.sadd(self._edition(subscription.edition), subscription.id)
            pipe.incr(self._generation)
            await pipe.execute()

    async def add_many(self, subscriptions: Iterable[Subscription]) -> None:
        batch = list(subscriptions)
        with self._broker._reachable():
            for start in range(0, len(batch), 1000):
                chunk = batch[start : start + 1000]
                olds = await self._r.hmget(self._subs, [s.id for s in chunk])
                pipe = self._r.pipeline(transaction=True)
                for subscription, old in zip(chunk, olds, strict=True):
                    if old is not None:
                        edition = Subscription.from_json(old).edition
                        pipe.srem(self._edition(edition), subscription.id)
                    pipe.hset(self._subs, subscription.id, subscription.to_json())
                    pipe.sadd(self._edition(subscription.edition), subscription.id)
                pipe.incr(self._generation)
                await pipe.execute()

    async def get(self, subscription_id: str) -> Subscription | None:
        with self._broker._reachable():
            raw = await self._r.hget(self._subs, subscription_id)
        return None if raw is None else Subscription.from_json(raw)

    async def remove(self, subscription_id: str) -> bool:
        with self._broker._reachable():
            raw = await self._r.hget(self._subs, subscription_id)
            if raw is None:
                return False
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(self._subs, subscription_id)
            pipe.srem(self._edition(Subscription.from_json(raw).edition), subscription_id)
            pipe.incr(self._generation)
            removed, *_ = await pipe.execute()
        return bool(removed)

    async def subscriptions(self, edition: str) -> list[Subscription]:
        out: list[Subscription] = []
        with self._broker._reachable():
            ids = list(await self._r.smembers(self._edition(edition)))
            for start in range(0, len(ids), 1000):
                records = await self._r.hmget(self._subs, ids[start : start + 1000])
                out.extend(Subscription.from_json(r) for r in records if r is not None)
        return out

    async def count(self) -> int:
        with self._broker._reachable():
            return int(await self._r.hlen(self._subs))

    async def generation(self) -> int:
        with self._broker._reachable():
            raw = await self._r.get(self._generation)
        return int(raw or 0)

    async def cursor(self, edition: str) -> Cursor | None:
        with self._broker._reachable():
            raw = await self._r.hget(self._cursors, edition)
        return None if raw is None else parse_cursor(raw.decode())

    async def save_cursor(self, edition: str, cursor: Cursor) -> None:
        with self._broker._reachable():
            await self._r.hset(self._cursors, edition, str(cursor))

    async def delivered(self, item_id: str) -> dict[str, int]:
        with self._broker._reachable():
            raw = await self._r.hgetall(f"{self._base}:delivered:{item_id}")
        return {k.decode(): int(v) for k, v in raw.items()}

    async def mark_delivered(self, item_id: str, version: int, ids: Iterable[str]) -> None:
        ids = list(ids)
        key = f"{self._base}:delivered:{item_id}"
        with self._broker._reachable():
            for start in range(0, len(ids), 5000):
                await self._mark_script(
                    keys=[key], args=[version, SENT_SECONDS, *ids[start : start + 5000]]
                )

    async def lease(self, owner: str, seconds: float) -> bool:
        with self._broker._reachable():
            return bool(
                await self._lease_script(keys=[self._lease], args=[owner, int(seconds * 1000)])
            )
