"""Where webhooks, their queues, leases and delivery logs live: beside the items, in the
same store (a table set in the embedded SQLite file, or keys under one hash tag in Redis),
so every publisher process sees the same webhooks and the same queues.

Both implementations keep one interface, `WebhookStore`, and one conformance suite
(tests/test_webhook_store.py) holds them to the same behaviour.
"""

from __future__ import annotations

import abc
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker, BrokerUnavailable
from .rules import DELIVERY_LOG_SIZE, Message, Webhook


@dataclass(frozen=True, slots=True)
class Queued:
    """A message waiting at the head of a webhook's queue."""

    msg_id: str
    payload: bytes
    enqueued: float  # epoch seconds
    attempts: int  # failed attempts at this message so far
    next_at: float  # not before (epoch seconds)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One line of a webhook's delivery log."""

    msg_id: str
    at: str
    status: int | None  # the HTTP status, or None when no answer came
    duration_ms: int
    error: str | None
    outcome: str  # delivered, failed, given_up, refused

    def to_dict(self) -> dict[str, Any]:
        return {
            "msg_id": self.msg_id,
            "at": self.at,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "outcome": self.outcome,
        }


class WebhookStore(abc.ABC):
    """Webhooks, their queues and delivery logs. Every method may raise BrokerUnavailable."""

    # --- the registry ---------------------------------------------------------------------

    @abc.abstractmethod
    async def create(self, hook: Webhook) -> None: ...

    @abc.abstractmethod
    async def get(self, webhook_id: str) -> Webhook | None: ...

    @abc.abstractmethod
    async def all(self) -> list[Webhook]:
        """Every webhook, oldest first."""

    @abc.abstractmethod
    async def delete(self, webhook_id: str) -> bool:
        """Remove a webhook with its queue, lease and log; False when there was none."""

    @abc.abstractmethod
    async def disable(self, webhook_id: str, when: str, reason: str) -> bool:
        """Stop delivering (and queueing) for the webhook; False when there is none."""

    @abc.abstractmethod
    async def enable(self, webhook_id: str) -> bool:
        """Deliver again, from the head of its queue, with the failure count at zero."""

    # --- the queue --------------------------------------------------------------------------

    @abc.abstractmethod
    async def cursor(self, edition: str) -> str | None:
        """How far the worker has queued the edition's log (`epoch:offset`), or None."""

    @abc.abstractmethod
    async def ingest(
        self, edition: str, expect: str | None, cursor: str, messages: Sequence[Message]
    ) -> str | None:
        """If the edition's cursor is still `expect`: queue each message for its webhook
        (unless the webhook is gone or disabled) and move the cursor to `cursor`, as one
        atomic step, and return None. Otherwise change nothing and return the cursor as it
        stands: another process got there first."""

    @abc.abstractmethod
    async def head(self, webhook_id: str) -> Queued | None: ...

    @abc.abstractmethod
    async def depth(self, webhook_id: str) -> int: ...

    @abc.abstractmethod
    async def done(self, webhook_id: str, msg_id: str, *, delivered: bool) -> None:
        """Drop the head if it is `msg_id`; a delivery also sets the failure count to zero."""

    @abc.abstractmethod
    async def failed(self, webhook_id: str, msg_id: str, next_at: float) -> int:
        """Count a failed attempt at the head (if it is still `msg_id`) and at the webhook;
        returns the webhook's consecutive failures."""

    @abc.abstractmethod
    async def record(self, webhook_id: str, attempt: Attempt) -> None:
        """Add to the delivery log, which keeps the newest DELIVERY_LOG_SIZE attempts."""

    @abc.abstractmethod
    async def deliveries(self, webhook_id: str) -> list[Attempt]:
        """The delivery log, newest first."""

    # --- leases -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def lease(self, webhook_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the right to deliver for a webhook for `ttl` seconds: one worker at
        a time, so its messages go out in order. False while another owner holds it."""

    @abc.abstractmethod
    async def release(self, webhook_id: str, owner: str) -> None: ...


def webhook_store(broker: Broker) -> WebhookStore:
    """The webhook store beside a broker, on the broker's own connection."""
    from ..brokers.embedded import EmbeddedBroker

    if isinstance(broker, EmbeddedBroker):
        return SqliteWebhookStore(broker)
    from ..brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        return RedisWebhookStore(broker)
    raise TypeError(f"no webhook store for {type(broker).__name__}")


# --- SQLite ------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, record TEXT NOT NULL,
    created REAL NOT NULL, disabled TEXT, disabled_reason TEXT,
    failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS webhook_cursors (edition TEXT PRIMARY KEY, cursor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL, msg_id TEXT NOT NULL, payload BLOB NOT NULL,
    enqueued REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS webhook_queue_head ON webhook_queue (webhook_id, seq);
CREATE TABLE IF NOT EXISTS webhook_leases (webhook_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL, attempt TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_log_by_hook ON webhook_log (webhook_id, seq);
"""


class SqliteWebhookStore(WebhookStore):
    """Tables in the embedded store's file, written in short transactions that wait for
    each other (`busy_timeout`), so `ticker webhooks` works while `ticker serve` runs."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self._ready = False

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection = self._broker.db
        if not self._ready:
            with self._errors():
                db.executescript(_SCHEMA)
            self._ready = True
        return db

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"the webhook tables fail: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _hook(self, row: tuple[Any, ...]) -> Webhook:
        hook = Webhook.from_json(row[0])
        hook.disabled, hook.disabled_reason, hook.failures = row[1], row[2], row[3]
        return hook

    async def create(self, hook: Webhook) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO webhooks (id, record, created) VALUES (?, ?, ?)",
                (hook.id, hook.to_json(), time.time()),
            )

    async def get(self, webhook_id: str) -> Webhook | None:
        with self._errors():
            row = self._db.execute(
                "SELECT record, disabled, disabled_reason, failures FROM webhooks WHERE id = ?",
                (webhook_id,),
            ).fetchone()
        return self._hook(row) if row else None

    async def all(self) -> list[Webhook]:
        with self._errors():
            rows = self._db.execute(
                "SELECT record, disabled, disabled_reason, failures FROM webhooks"
                " ORDER BY created, id"
            ).fetchall()
        return [self._hook(row) for row in rows]

    async def delete(self, webhook_id: str) -> bool:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount > 0
            for table in ("webhook_queue", "webhook_leases", "webhook_log"):
                db.execute(f"DELETE FROM {table} WHERE webhook_id = ?", (webhook_id,))
        return gone

    async def disable(self, webhook_id: str, when: str, reason: str) -> bool:
        with self._transaction() as db:
            return (
                db.execute(
                    "UPDATE webhooks SET disabled = ?, disabled_reason = ? WHERE id = ?",
                    (when, reason, webhook_id),
                ).rowcount
                > 0
            )

    async def enable(self, webhook_id: str) -> bool:
        with self._transaction() as db:
            found = (
                db.execute(
                    "UPDATE webhooks SET disabled = NULL, disabled_reason = NULL, failures = 0"
                    " WHERE id = ?",
                    (webhook_id,),
                ).rowcount
                > 0
            )
            db.execute(
                "UPDATE webhook_queue SET next_at = 0, attempts = 0 WHERE webhook_id = ?",
                (webhook_id,),
            )
        return found

    async def cursor(self, edition: str) -> str | None:
        with self._errors():
            row = self._db.execute(
                "SELECT cursor FROM webhook_cursors WHERE edition = ?", (edition,)
            ).fetchone()
        return row[0] if row else None

    async def ingest(
        self, edition: str, expect: str | None, cursor: str, messages: Sequence[Message]
    ) -> str | None:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT cursor FROM webhook_cursors WHERE edition = ?", (edition,)
            ).fetchone()
            current = row[0] if row else None
            if current != expect:
                return current or ""  # "": no cursor yet
            db.execute("INSERT OR REPLACE INTO webhook_cursors VALUES (?, ?)", (edition, cursor))
            for m in messages:
                db.execute(
                    "INSERT INTO webhook_queue (webhook_id, msg_id, payload, enqueued)"
                    " SELECT ?, ?, ?, ? FROM webhooks WHERE id = ? AND disabled IS NULL",
                    (m.webhook_id, m.msg_id, m.payload, now, m.webhook_id),
                )
        return None

    async def head(self, webhook_id: str) -> Queued | None:
        with self._errors():
            row = self._db.execute(
                "SELECT msg_id, payload, enqueued, attempts, next_at FROM webhook_queue"
                " WHERE webhook_id = ? ORDER BY seq LIMIT 1",
                (webhook_id,),
            ).fetchone()
        return Queued(row[0], bytes(row[1]), row[2], row[3], row[4]) if row else None

    async def depth(self, webhook_id: str) -> int:
        with self._errors():
            return self._db.execute(
                "SELECT count(*) FROM webhook_queue WHERE webhook_id = ?", (webhook_id,)
            ).fetchone()[0]

    def _head_seq(self, db: sqlite3.Connection, webhook_id: str, msg_id: str) -> int | None:
        row = db.execute(
            "SELECT seq, msg_id FROM webhook_queue WHERE webhook_id = ? ORDER BY seq LIMIT 1",
            (webhook_id,),
        ).fetchone()
        return row[0] if row and row[1] == msg_id else None

    async def done(self, webhook_id: str, msg_id: str, *, delivered: bool) -> None:
        with self._transaction() as db:
            seq = self._head_seq(db, webhook_id, msg_id)
            if seq is not None:
                db.execute("DELETE FROM webhook_queue WHERE seq = ?", (seq,))
            if delivered:
                db.execute("UPDATE webhooks SET failures = 0 WHERE id = ?", (webhook_id,))

    async def failed(self, webhook_id: str, msg_id: str, next_at: float) -> int:
        with self._transaction() as db:
            seq = self._head_seq(db, webhook_id, msg_id)
            if seq is not None:
                db.execute(
                    "UPDATE webhook_queue SET attempts = attempts + 1, next_at = ? WHERE seq = ?",
                    (next_at, seq),
                )
            db.execute("UPDATE webhooks SET failures = failures + 1 WHERE id = ?", (webhook_id,))
            row = db.execute("SELECT failures FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
        return row[0] if row else 0

    async def record(self, webhook_id: str, attempt: Attempt) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO webhook_log (webhook_id, attempt) VALUES (?, ?)",
                (webhook_id, json.dumps(attempt.to_dict())),
            )
            db.execute(
                "DELETE FROM webhook_log WHERE webhook_id = ? AND seq NOT IN (SELECT seq FROM"
                " webhook_log WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?)",
                (webhook_id, webhook_id, DELIVERY_LOG_SIZE),
            )

    async def deliveries(self, webhook_id: str) -> list[Attempt]:
        with self._errors():
            rows = self._db.execute(
                "SELECT attempt FROM webhook_log WHERE webhook_id = ? ORDER BY seq DESC",
                (webhook_id,),
            ).fetchall()
        return [Attempt(**json.loads(row[0])) for row in rows]

    async def lease(self, webhook_id: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT owner, expires FROM webhook_leases WHERE webhook_id = ?", (webhook_id,)
            ).fetchone()
            if row and row[0] != owner and row[1] > now:
                return False
            db.execute(
                "INSERT OR REPLACE INTO webhook_leases VALUES (?, ?, ?)",
                (webhook_id, owner, now + ttl),
            )
        return True

    async def release(self, webhook_id: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM webhook_leases WHERE webhook_id = ? AND owner = ?",
                (webhook_id, owner),
            )


# --- Redis -------------------------------------------------------------------------------------

# Every key shares one hash tag, so each script below touches one slot (Redis Cluster).
#   P:hooks            hash  id -> the webhook's record (JSON, with its secret)
#   P:state:ID         hash  disabled, disabled_reason, failures
#   P:disabled         set   ids of disabled webhooks
#   P:cursors          hash  edition -> epoch:offset queued so far
#   P:queue:ID         list  messages: "msg_id\nenqueued\npayload"
#   P:head:ID          hash  msg_id, attempts, next_at of the head's failed attempts
#   P:lease:ID         string the owner, with an expiry
#   P:log:ID           list  attempts, newest first, at most DELIVERY_LOG_SIZE

_INGEST = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return {0, current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local n = (#ARGV - 4) / 2
for i = 1, n do
  local id = ARGV[3 + 2 * i]
  if redis.call('HEXISTS', KEYS[2], id) == 1 and redis.call('SISMEMBER', KEYS[3], id) == 0 then
    redis.call('RPUSH', KEYS[3 + i], ARGV[4 + 2 * i])
  end
end
return {1, ''}
"""
# ARGV: edition, expected cursor ('' for none), new cursor, now, then (id, entry) pairs.

_DONE = """
local head = redis.call('LINDEX', KEYS[1], 0)
if head and string.sub(head, 1, #ARGV[1] + 1) == ARGV[1] .. '\\n' then
  redis.call('LPOP', KEYS[1])
  redis.call('DEL', KEYS[2])
end
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then
  redis.call('HSET', KEYS[3], 'failures', 0)
end
return 1
"""

_FAILED = """
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0 then return 0 end
local head = redis.call('LINDEX', KEYS[1], 0)
if head and string.sub(head, 1, #ARGV[1] + 1) == ARGV[1] .. '\\n' then
  if redis.call('HGET', KEYS[2], 'msg_id') ~= ARGV[1] then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], 'msg_id', ARGV[1])
  end
  redis.call('HINCRBY', KEYS[2], 'attempts', 1)
  redis.call('HSET', KEYS[2], 'next_at', ARGV[2])
end
return redis.call('HINCRBY', KEYS[3], 'failures', 1)
"""

_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

_DISABLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'disabled', ARGV[2], 'disabled_reason', ARGV[3])
return 1
"""

_ENABLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], 'disabled', 'disabled_reason')
redis.call('HSET', KEYS[3], 'failures', 0)
redis.call('DEL', KEYS[4])
return 1
"""


class RedisWebhookStore(WebhookStore):
    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self._p = f"{broker.prefix}:{{webhooks}}"
        redis = broker.client
        self._ingest = redis.register_script(_INGEST)
        self._done = redis.register_script(_DONE)
        self._failed = redis.register_script(_FAILED)
        self._lease = redis.register_script(_LEASE)
        self._release = redis.register_script(_RELEASE)
        self._disable = redis.register_script(_DISABLE)
        self._enable = redis.register_script(_ENABLE)

    @property
    def _redis(self) -> Any:
        return self._broker.client

    def _key(self, kind: str, webhook_id: str = "") -> str:
        return f"{self._p}:{kind}:{webhook_id}" if webhook_id else f"{self._p}:{kind}"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from redis.exceptions import RedisError

        try:
            yield
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis fails for webhooks: {exc}") from exc

    def _hook(self, record: bytes, state: dict[bytes, bytes]) -> Webhook:
        hook = Webhook.from_json(record)
        disabled = state.get(b"disabled")
        hook.disabled = disabled.decode() if disabled else None
        reason = state.get(b"disabled_reason")
        hook.disabled_reason = reason.decode() if reason else None
        hook.failures = int(state.get(b"failures", 0))
        return hook

    async def create(self, hook: Webhook) -> None:
        with self._errors():
            await self._redis.hset(self._key("hooks"), hook.id, hook.to_json())

    async def get(self, webhook_id: str) -> Webhook | None:
        with self._errors():
            record = await self._redis.hget(self._key("hooks"), webhook_id)
            if record is None:
                return None
            state = await self._redis.hgetall(self._key("state", webhook_id))
        return self._hook(record, state)

    async def all(self) -> list[Webhook]:
        with self._errors():
            records = await self._redis.hgetall(self._key("hooks"))
            ids = [k.decode() for k in records]
            states = []
            if ids:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for webhook_id in ids:
                        pipe.hgetall(self._key("state", webhook_id))
                    states = await pipe.execute()
        hooks = [self._hook(records[i.encode()], s) for i, s in zip(ids, states, strict=True)]
        return sorted(hooks, key=lambda h: (h.created, h.id))

    async def delete(self, webhook_id: str) -> bool:
        with self._errors():
            gone = await self._redis.hdel(self._key("hooks"), webhook_id)
            await self._redis.srem(self._key("disabled"), webhook_id)
            await self._redis.delete(
                *(self._key(k, webhook_id) for k in ("state", "queue", "head", "lease", "log"))
            )
        return bool(gone)

    async def disable(self, webhook_id: str, when: str, reason: str) -> bool:
        keys = [self._key("hooks"), self._key("disabled"), self._key("state", webhook_id)]
        with self._errors():
            return bool(await self._disable(keys=keys, args=[webhook_id, when, reason]))

    async def enable(self, webhook_id: str) -> bool:
        keys = [
            self._key("hooks"),
            self._key("disabled"),
            self._key("state", webhook_id),
            self._key("head", webhook_id),
        ]
        with self._errors():
            return bool(await self._enable(keys=keys, args=[webhook_id]))

    async def cursor(self, edition: str) -> str | None:
        with self._errors():
            value = await self._redis.hget(self._key("cursors"), edition)
        return value.decode() if value is not None else None

    async def ingest(
        self, edition: str, expect: str | None, cursor: str, messages: Sequence[Message]
    ) -> str | None:
        now = time.time()
        keys = [self._key("cursors"), self._key("hooks"), self._key("disabled")]
        args: list[Any] = [edition, expect or "", cursor, now]
        for m in messages:
            keys.append(self._key("queue", m.webhook_id))
            entry = b"\n".join((m.msg_id.encode(), repr(now).encode(), m.payload))
            args += [m.webhook_id, entry]
        with self._errors():
            ok, current = await self._ingest(keys=keys, args=args)
        return None if ok else current.decode()

    async def head(self, webhook_id: str) -> Queued | None:
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lindex(self._key("queue", webhook_id), 0)
                pipe.hgetall(self._key("head", webhook_id))
                entry, state = await pipe.execute()
        if entry is None:
            return None
        msg_id, enqueued, payload = entry.split(b"\n", 2)
        msg = msg_id.decode()
        if state.get(b"msg_id", b"").decode() != msg:
            state = {}
        return Queued(
            msg,
            payload,
            float(enqueued),
            int(state.get(b"attempts", 0)),
            float(state.get(b"next_at", 0)),
        )

    async def depth(self, webhook_id: str) -> int:
        with self._errors():
            return int(await self._redis.llen(self._key("queue", webhook_id)))

    async def done(self, webhook_id: str, msg_id: str, *, delivered: bool) -> None:
        keys = [
            self._key("queue", webhook_id),
            self._key("head", webhook_id),
            self._key("state", webhook_id),
            self._key("hooks"),
        ]
        with self._errors():
            await self._done(keys=keys, args=[msg_id, "1" if delivered else "0", webhook_id])

    async def failed(self, webhook_id: str, msg_id: str, next_at: float) -> int:
        keys = [
            self._key("queue", webhook_id),
            self._key("head", webhook_id),
            self._key("state", webhook_id),
            self._key("hooks"),
        ]
        with self._errors():
            return int(await self._failed(keys=keys, args=[msg_id, repr(next_at), webhook_id]))

    async def record(self, webhook_id: str, attempt: Attempt) -> None:
        key = self._key("log", webhook_id)
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, json.dumps(attempt.to_dict()))
                pipe.ltrim(key, 0, DELIVERY_LOG_SIZE - 1)
                await pipe.execute()

    async def deliveries(self, webhook_id: str) -> list[Attempt]:
        with self._errors():
            rows = await self._redis.lrange(self._key("log", webhook_id), 0, -1)
        return [Attempt(**json.loads(row)) for row in rows]

    async def lease(self, webhook_id: str, owner: str, ttl: float) -> bool:
        with self._errors():
            return bool(
                await self._lease(
                    keys=[self._key("lease", webhook_id)], args=[owner, max(1, int(ttl * 1000))]
                )
            )

    async def release(self, webhook_id: str, owner: str) -> None:
        with self._errors():
            await self._release(keys=[self._key("lease", webhook_id)], args=[owner])
