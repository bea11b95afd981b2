"""The Redis broker: many publisher and hub processes share one Redis.

Every publish is one Lua script, so the item, the capped stream that holds the history and
the pub/sub announcement can never disagree. Every key of an edition carries the hash tag
`{edition}`, so in Redis Cluster an edition lives in one slot and the script stays legal.

The same broker runs on one Redis (`redis://`, `rediss://`, `unix://`), on a Redis Cluster
(`redis+cluster://`: SPUBLISH, and each edition followed with SSUBSCRIBE on the master that
owns its slot) and on the master that Redis Sentinel names (`redis+sentinel://`); see
`redis_ha.py` for the URL forms.

Pub/sub is at-most-once; the stream is what makes it whole. A follower numbers what it has
seen, fills any gap from the stream, and after a lost connection re-subscribes first and
reads the stream second, so nothing published in between is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from .. import audit as trail
from ..archive import PRUNE_BATCH, SCAN_BUDGET, ArchivePage, ArchiveQuery, record_key, record_terms
from ..audit import AuditEntry, AuditPage, AuditQuery, AuditQueryError
from ..events import UPSERT_KINDS, Cursor, EditionState, Event, event_body
from ..items import Item, edition_of, parse_time
from . import redis_ha
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

log = logging.getLogger(__name__)

# ReadOnlyError: after a failover, the address may lead to a replica for a while.
# The cluster's own words for a slot without a reachable master (CLUSTERDOWN, TRYAGAIN,
# a MOVED or ASK the client gave up on, no node answering) mean the same; a single
# Redis never says them.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OSError,
    ClusterDownError,
    TryAgainError,
    AskError,
    RedisClusterException,
)
# Trimming the audit trail by time (XADD with MINID, exclusive XREVRANGE) needs Redis 6.2.
_OLDEST_REDIS = (6, 2)
# The audit trail is trimmed on every write; idle streams at most this often (seconds).
_PRUNE_EVERY = 3600.0
_AUDIT_BATCH = 200
# Entries of one stream a page reads at most: a filter that matches little costs a bounded
# read per page, and the cursor goes on from where the reading stopped.
_AUDIT_SCAN = 2000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


def _lost_transport(exc: RuntimeError) -> bool:
    """uvloop's word for a connection reset before redis-py's first write on it, which
    redis-py passes on as it is: the store went away, like any ConnectionError."""
    return "handler is closed" in str(exc) or "unable to perform operation" in str(exc)


def _lua(*names: str) -> str:
    return "\n".join(Path(__file__).with_name(name).read_text() for name in names)


def _sharded(script: str) -> str:
    """The publish script for Redis Cluster: SPUBLISH on the edition's channel (which
    carries the edition's hash tag, so it is in the script's slot) instead of PUBLISH."""
    plain = "redis.call('PUBLISH', channel, payload)"
    assert script.count(plain) == 1, "publish.lua announces each event once"
    return script.replace(plain, "redis.call('SPUBLISH', channel, payload)")


def _ms(when: datetime) -> int:
    """Milliseconds since 1970, exact: expiry is compared as an integer score."""
    return (when - _UNIX_EPOCH) // timedelta(milliseconds=1)


def _backoff(failures: int) -> float:
    """Jittered, so hubs that lost Redis together do not all come back in the same instant."""
    delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** max(failures - 1, 0))
    return random.uniform(delay / 2, delay)


def _where(url: str) -> str:
    """Where Redis is, for error messages: never the password from the URL."""
    target = redis_ha.parse(url)
    if target is not None:
        return target.where
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


@dataclass(frozen=True, slots=True)
class _EditionKeys:
    """An edition's keys; the `{edition}` hash tag puts them all in one cluster slot."""

    base: str
    meta: str
    items: str
    log: str
    expiry: str
    live: str
    audit: str
    archive: str  # the archive's keys start with this (archive.lua)
    pinned: str  # the ids of pinned live items
    due: str  # scheduled items' ids by due time (a sorted set)
    waiting: str  # scheduled items by id (a hash)

    @classmethod
    def of(cls, prefix: str, edition: str) -> _EditionKeys:
        base = f"{prefix}:{{{edition}}}"
        names = (
            "meta",
            "items",
            "log",
            "expiry",
            "live",
            "audit",
            "archive",
            "pinned",
            "scheduled:due",
            "scheduled",
        )
        return cls(base, *(f"{base}:{name}" for name in names))

    def archived(self, name: str) -> str:
        return f"{self.archive}:{name}"

    def idempotency(self, key: str) -> str:
        return f"{self.base}:idem:{key}"


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        editions: tuple[str, ...],
        history: int = 1000,
        idempotency_seconds: int = 86400,
        prefix: str = "ticker",
        socket_timeout: float = 2.0,
        audit_days: int = 90,
    ) -> None:
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a whole number of at least 1, not {history!r}")
        if not isinstance(idempotency_seconds, int) or idempotency_seconds < 1:
            raise ValueError(
                f"idempotency_seconds must be a whole number of at least 1, "
                f"not {idempotency_seconds!r}"
            )
        if not editions:
            raise ValueError("a broker serves at least one edition")
        self.url = url
        # A cluster or a sentinel-named master; None for one Redis (redis://, unix://).
        self._target = redis_ha.parse(url)
        self._cluster = self._target is not None and self._target.scheme == redis_ha.CLUSTER
        self._sentinel: Any = None
        self.editions = editions
        self.history = history
        self.idempotency_seconds = idempotency_seconds
        self.socket_timeout = socket_timeout
        self._where = _where(url)
        self._keys = {edition: _EditionKeys.of(prefix, edition) for edition in editions}
        self.prefix = prefix
        self.audit_days = audit_days
        self._pruned = float("-inf")
        self._closed = False
        self._slots_lock = asyncio.Lock()
        self._slots_refreshed = float("-inf")
        # No automatic retry: a publish retried after a timeout could run twice.
        # Callers retry, with an idempotency key.
        self._redis: Any = self._client(Retry(NoBackoff(), 0))
        publish = _lua("audit.lua", "archive.lua", "publish.lua")
        if self._cluster:
            # Sharded pub/sub: the event reaches only the shard that owns the edition's slot.
            publish = _sharded(publish)
        self._publish_script = self._redis.register_script(publish)
        self._state_script = self._redis.register_script(_lua("epoch.lua", "state.lua"))
        self._archive_put_script = self._redis.register_script(
            _lua("archive.lua", "archive_put.lua")
        )
        self._archive_query_script = self._redis.register_script(_lua("archive_query.lua"))
        self._archive_prune_script = self._redis.register_script(_lua("archive_prune.lua"))
        self._add_token_script = self._redis.register_script(_lua("audit.lua", "add_token.lua"))
        self._change_token_script = self._redis.register_script(
            _lua("audit.lua", "revoke_token.lua")
        )
        self._lookup_token_script = self._redis.register_script(_lua("lookup_token.lua"))
        self._schedule_script = self._redis.register_script(_lua("audit.lua", "schedule.lua"))

    def _client(self, retry: Retry) -> Any:
        # With maintenance notifications on, redis-py 8.1 stops checking pooled connections
        # before use (redis-py #4128), and the first command after a Redis restart fails.
        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "retry": retry,
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }
        target = self._target
        if target is None:
            return aioredis.Redis.from_url(self.url, **options)
        if target.scheme == redis_ha.CLUSTER:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
                require_full_coverage=False,
                **target.credentials(),
                **options,
            )
        if self._sentinel is None:
            from redis.asyncio.sentinel import Sentinel

            # One set of sentinel connections for the broker's life; each client made
            # here asks them for the master on every new connection.
            self._sentinel = Sentinel(
                list(target.hosts),
                sentinel_kwargs={
                    "socket_timeout": self.socket_timeout,
                    "socket_connect_timeout": self.socket_timeout,
                },
            )
        assert target.service is not None
        return self._sentinel.master_for(
            target.service, db=target.db, **target.credentials(), **options
        )

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(f"Redis at {self._where} is unreachable: {exc}") from exc
        except RuntimeError as exc:
            if not _lost_transport(exc):
                raise
            raise BrokerUnavailable(f"Redis at {self._where} is unreachable: {exc}") from exc

    def _edition(self, edition: str) -> _EditionKeys:
        try:
            return self._keys[edition]
        except KeyError:
            raise BrokerError(f"edition {edition!r} is not served by this broker") from None

    async def start(self) -> None:
        """Raises BrokerUnavailable when Redis cannot be reached (worth retrying), and
        BrokerMisconfigured when it answers but refuses us: a wrong password or user, a
        missing permission, a database index out of range, a Redis too old."""
        self._closed = False
        try:
            with self._reachable():
                await self._redis.ping()
                await self._check_version()
                for script in (
                    self._publish_script,
                    self._state_script,
                    self._archive_put_script,
                    self._archive_query_script,
                    self._archive_prune_script,
                    self._add_token_script,
                    self._change_token_script,
                    self._lookup_token_script,
                    self._schedule_script,
                ):
                    await self._redis.script_load(script.script)
                for edition in self.editions:
                    await self._backfill(edition)
        except BrokerUnavailable as exc:
            reason = self._refusal(exc.__cause__)
            if reason is None:
                raise
            raise BrokerMisconfigured(reason) from None
        except RedisError as exc:
            raise BrokerMisconfigured(
                self._refusal(exc) or f"Redis at {self._where} refuses ticker: {exc}"
            ) from None

    async def _check_version(self) -> None:
        try:
            info = await self._redis.info("server")
        except ResponseError:  # INFO renamed or denied: the scripts will tell
            return
        found = str(info.get("redis_version", ""))
        try:
            version = tuple(int(part) for part in found.split(".")[:2])
        except ValueError:
            return
        if version < _OLDEST_REDIS:
            raise BrokerMisconfigured(
                f"Redis at {self._where} is version {found}; ticker needs Redis "
                f"{'.'.join(map(str, _OLDEST_REDIS))} or newer (7 recommended)"
            )

    def _refusal(self, exc: BaseException | None) -> str | None:
        """Why Redis refuses us, when retrying cannot help; None for a passing outage.
        Never quotes the URL, which may hold the password."""
        where = f"Redis at {self._where}"
        text = str(exc)
        upper = text.upper()
        if isinstance(exc, AuthenticationError) or "NOAUTH" in upper or "WRONGPASS" in upper:
            return (
                f"{where} refused the credentials in the Redis URL ({text}): check the "
                "user name and password in TICKER_REDIS_URL / --redis-url"
            )
        if isinstance(exc, AuthorizationError | NoPermissionError) or "NOPERM" in upper:
            return (
                f"{where} denies the Redis user a command or key ticker needs ({text}): "
                "grant it +@all on ~ticker:* (or the keys of your prefix), or use another user"
            )
        if "DB INDEX" in upper or "INVALID DATABASE" in upper:
            return (
                f"{where} has no such database ({text}): fix the database number at the end "
                "of the Redis URL"
            )
        if "UNKNOWN COMMAND" in upper:
            return (
                f"{where} does not know a command ticker needs ({text}): it is too old or "
                "the command is disabled; ticker needs Redis 6.2 or newer (7 recommended)"
            )
        if isinstance(exc, ResponseError):
            return f"{where} refuses ticker: {text}"
        return None

    async def close(self) -> None:
        self._closed = True
        await self._bounded(self._redis.aclose())
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await self._bounded(sentinel.aclose())

    async def _bounded(self, closing: Awaitable[None]) -> None:
        """Closing a connection to a Redis that stopped answering must not hang shutdown."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(closing, self.socket_timeout)

    async def ping(self) -> None:
        with self._reachable():
            await self._redis.ping()

    # --- items and their log ---------------------------------------------------------------

    async def publish(self, change: Change) -> Published:
        item = change.item
        keys = self._edition(item.edition)
        script_keys = [
            keys.meta,
            keys.items,
            keys.log,
            keys.expiry,
            keys.audit,
            keys.pinned,
            keys.due,
            keys.waiting,
        ]
        if change.idempotency_key is not None:
            script_keys.append(keys.idempotency(change.idempotency_key))
        data = item.to_dict()
        item_json = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        expires = item.expires if change.kind in UPSERT_KINDS else None
        args = [
            secrets.token_hex(4),
            change.kind,
            item.id,
            "" if change.expected_version is None else change.expected_version,
            item_json,
            event_body(change.kind, item.edition, item_json),
            item.editor,
            "" if expires is None else _ms(parse_time(expires)),
            self.history,
            keys.live,
            change.fingerprint,
            self.idempotency_seconds,
            item.version,
            (change.audit or trail.for_change(change.kind, item)).body_json(),
            self.audit_minid(),
            "1" if item.pinned else "0",
            "" if change.max_pinned is None else change.max_pinned,
            "" if change.scheduled_version is None else change.scheduled_version,
            keys.archive,
        ]
        args += [record_key(data), *record_terms(data)]
        with self._reachable():
            reply = await self._publish_script(keys=script_keys, args=args)
            if reply[0] == b"replayed-id":
                return await self._replay(keys, reply)
        return _published(change, reply)

    async def _replay(self, keys: _EditionKeys, reply: list[Any]) -> Published:
        """An idempotent retry: the record holds the item's id and version only, and the
        item as first published is found live or in the log."""
        item_id, version = reply[1].decode(), int(reply[2])
        live = Item.from_dict(json.loads(reply[3])) if reply[3] else None
        history: list[bytes] = []
        if live is None or live.version != version:
            entries = await self._redis.xrevrange(keys.log, "+", "-")
            history = [fields[b"event"] for _, fields in entries]
        return Published(replayed_item(item_id, version, live, history), None, replayed=True)

    async def get(self, item_id: str) -> Item | None:
        keys = self._keys.get(edition_of(item_id) or "")
        if keys is None:
            return None
        with self._reachable():
            stored = await self._redis.hget(keys.items, item_id)
        return None if stored is None else Item.from_dict(json.loads(stored))

    async def state(self, edition: str) -> EditionState:
        with self._reachable():
            state = await self._read_since(edition, None)
        assert isinstance(state, EditionState)
        return state

    async def live(self, edition: str) -> tuple[Cursor, list[dict[str, Any]]]:
        """The live items without the history: what `GET /api/items` needs, in one round
        trip."""
        keys = self._edition(edition)
        with self._reachable():
            async with self._redis.pipeline(transaction=True) as pipe:
                meta, stored = (
                    await pipe.hmget(keys.meta, "epoch", "offset").hvals(keys.items).execute()
                )
        if meta[0] is None:  # no epoch yet: let the state script start one
            state = await self.state(edition)
            return state.cursor, state.items
        return Cursor(meta[0].decode(), int(meta[1])), [json.loads(raw) for raw in stored]

    async def _backfill(self, edition: str) -> None:
        """Archive what a store written before the archive holds: the items in the retained
        history, then the live ones. Once per edition (the edition's meta marks it done); a
        record already at the same or a newer version is left as it is, so a publish that
        runs meanwhile is never undone."""
        keys = self._edition(edition)
        if await self._redis.hget(keys.meta, "archived"):
            return
        state = await self._read_since(edition, None)
        assert isinstance(state, EditionState)
        found = [event.item for event in state.events] + list(state.items)
        for item in found:
            if not {"id", "created", "version", "status", "editor"} <= item.keys():
                continue
            await self._archive_put_script(
                keys=[keys.archived("index"), keys.archived("items"), keys.archived("all")],
                args=[
                    keys.archive,
                    item["id"],
                    item["version"],
                    record_key(item),
                    json.dumps(item, ensure_ascii=False, separators=(",", ":")),
                    *record_terms(item),
                ],
            )
        await self._redis.hset(keys.meta, "archived", 1)

    async def archive(self, query: ArchiveQuery) -> ArchivePage:
        keys = self._edition(query.edition)
        script_keys = [
            keys.archived("items"),
            keys.archived("all"),
            *(keys.archived(f"t:{term}") for term in query.terms),
        ]
        args = [query.below or "", query.at_least or "", query.limit, SCAN_BUDGET]
        with self._reachable():
            reply = await self._archive_query_script(keys=script_keys, args=args)
        after = reply[0].decode() or None
        return ArchivePage([json.loads(raw) for raw in reply[1:]], after)

    async def prune_archive(self, edition: str, before: str) -> int:
        keys = self._edition(edition)
        script_keys = [keys.archived("all"), keys.archived("index"), keys.archived("items")]
        removed, after = 0, ""
        while True:
            with self._reachable():
                reply = await self._archive_prune_script(
                    keys=script_keys, args=[keys.archive, after, before, PRUNE_BATCH]
                )
            removed += int(reply[0])
            after = reply[1].decode()
            if not after:
                return removed

    async def _read_since(self, edition: str, since: Cursor | None) -> EditionState | list[Event]:
        """The events after `since`, or the whole state when they are not all in the log."""
        keys = self._edition(edition)
        args: list[Any] = [secrets.token_hex(4)]
        if since is not None:
            args += [since.epoch, since.offset]
        reply = await self._state_script(keys=[keys.meta, keys.items, keys.log], args=args)
        epoch, offset, shape = reply[0].decode(), int(reply[1]), reply[2]
        if shape == b"events":
            return [Event.from_payload(payload) for payload in reply[3]]
        items = sorted((json.loads(raw) for raw in reply[3]), key=lambda i: i["created"])
        events = [Event.from_payload(payload) for payload in reply[4]]
        return EditionState(edition, epoch, offset, items, events)

    def audit_minid(self) -> int:
        """The oldest stream ID the audit trail keeps: now less the retention."""
        return _ms(trail.cutoff(datetime.now(UTC), self.audit_days))

    async def due(self, now: datetime, limit: int = 100) -> list[Item]:
        loop = asyncio.get_running_loop()
        if loop.time() - self._pruned > _PRUNE_EVERY:  # idle editions' trails, too
            self._pruned = loop.time()
            await self.audit.prune(datetime.now(UTC))  # by the clock, not `now`
        return await self._soonest(lambda k: (k.expiry, k.items), now, limit)

    async def cursor(self, edition: str) -> Cursor:
        keys = self._edition(edition)
        with self._reachable():
            epoch, offset = await self._redis.hmget(keys.meta, "epoch", "offset")
        if epoch is None:  # no epoch yet: let the state script start one
            return (await self.state(edition)).cursor
        return Cursor(epoch.decode(), int(offset))

    async def next_expiry(self) -> datetime | None:
        soonest: float | None = None
        with self._reachable():
            for keys in self._keys.values():
                first = await self._redis.zrange(keys.expiry, 0, 0, withscores=True)
                if first and (soonest is None or first[0][1] < soonest):
                    soonest = first[0][1]
        return None if soonest is None else _UNIX_EPOCH + timedelta(milliseconds=soonest)

    # --- scheduled items -------------------------------------------------------------------

    async def schedule(
        self,
        item: Item,
        expected_version: int | None = None,
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        audit: AuditEntry | None = None,
    ) -> Published:
        if item.publish_at is None:
            raise ValueError("a scheduled item needs publish_at")
        keys = self._edition(item.edition)
        script_keys = [keys.due, keys.waiting, keys.items, keys.audit]
        if idempotency_key is not None:
            script_keys.append(keys.idempotency(idempotency_key))
        args = [
            "put",
            item.id,
            "" if expected_version is None else expected_version,
            item.to_json(),
            _ms(parse_time(item.publish_at)),
            fingerprint,
            self.idempotency_seconds,
            item.version,
            (audit or trail.for_schedule("scheduled", item)).body_json(),
            self.audit_minid(),
        ]
        with self._reachable():
            reply = await self._schedule_script(keys=script_keys, args=args)
            if reply[0] == b"replayed-id":
                return await self._replay(keys, reply)
        if reply[0] == b"mismatch":
            raise IdempotencyMismatch(
                f"Idempotency-Key {idempotency_key!r} was used for a different request"
            )
        if reply[0] == b"conflict":
            raise VersionConflict(item.id, int(reply[1]) if len(reply) > 1 else None)
        return Published(item, None)

    async def unschedule(
        self, item_id: str, expected_version: int, *, audit: AuditEntry | None = None
    ) -> None:
        keys = self._edition(edition_of(item_id) or "")
        if audit is None:  # a caller without an entry of its own: the item says who
            held = await self.get_scheduled(item_id)
            if held is None or held.version != expected_version:
                raise VersionConflict(item_id, None if held is None else held.version)
            audit = trail.for_schedule("withdrawn", held)
        args = ["cancel", item_id, expected_version, "", "", "", "", ""]
        args += [audit.body_json(), self.audit_minid()]
        with self._reachable():
            reply = await self._schedule_script(
                keys=[keys.due, keys.waiting, keys.items, keys.audit], args=args
            )
        if reply[0] == b"conflict":
            raise VersionConflict(item_id, int(reply[1]) if len(reply) > 1 else None)

    async def get_scheduled(self, item_id: str) -> Item | None:
        keys = self._keys.get(edition_of(item_id) or "")
        if keys is None:
            return None
        with self._reachable():
            stored = await self._redis.hget(keys.waiting, item_id)
        return None if stored is None else Item.from_dict(json.loads(stored))

    async def scheduled(self, edition: str) -> list[Item]:
        keys = self._edition(edition)
        with self._reachable():
            stored = await self._redis.hvals(keys.waiting)
        found = [Item.from_dict(json.loads(raw)) for raw in stored]
        return sorted(found, key=lambda i: (parse_time(i.publish_at or ""), i.id))

    async def due_scheduled(self, now: datetime, limit: int = 100) -> list[Item]:
        return await self._soonest(lambda k: (k.due, k.waiting), now, limit)

    async def _soonest(
        self, where: Callable[[_EditionKeys], tuple[str, str]], now: datetime, limit: int
    ) -> list[Item]:
        """The items a sorted set of due times (expiry, or release) holds at or before
        `now` in any edition, soonest first, read from the hash `where` names beside it."""
        found: list[tuple[float, Item]] = []
        with self._reachable():
            for keys in self._keys.values():
                times, stored_in = where(keys)
                due = await self._redis.zrangebyscore(
                    times, "-inf", _ms(now), start=0, num=limit, withscores=True
                )
                if not due:
                    continue
                stored = await self._redis.hmget(stored_in, [item_id for item_id, _ in due])
                found += [
                    (score, Item.from_dict(json.loads(raw)))
                    for (_, score), raw in zip(due, stored, strict=True)
                    if raw is not None
                ]
        found.sort(key=lambda pair: pair[0])
        return [item for _, item in found[:limit]]

    async def next_scheduled(self) -> datetime | None:
        soonest: float | None = None
        with self._reachable():
            for keys in self._keys.values():
                first = await self._redis.zrange(keys.due, 0, 0, withscores=True)
                if first and (soonest is None or first[0][1] < soonest):
                    soonest = first[0][1]
        return None if soonest is None else _UNIX_EPOCH + timedelta(milliseconds=soonest)

    # --- following -------------------------------------------------------------------------

    async def follow(self, editions: tuple[str, ...]) -> AsyncIterator[EditionState | Event]:
        if self._cluster:
            async with aclosing(self._follow_shards(editions)) as updates:
                async for update in updates:
                    yield update
            return
        channels = [self._edition(edition).live for edition in editions]
        seen: dict[str, Cursor] = {}
        # After a failover the new master may lack the newest events the follower saw:
        # those followers check the event at their cursor before they resume.
        heard: dict[str, bytes] | None = {} if self._target is not None else None
        failures = 0
        while not self._closed:
            client = self._client(Retry(NoBackoff(), 0, supported_errors=()))
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub, channels)
                for edition in editions:
                    for update in await self._catch_up(edition, seen, heard):
                        yield update
                if failures:
                    log.info("following Redis at %s again", self._where)
                failures = 0
                async with aclosing(self._messages(pubsub)) as messages:
                    async for payload in messages:
                        event = Event.from_payload(payload)
                        for update in await self._deliver(event, seen, heard):
                            yield update
            except (RedisError, OSError) as exc:
                # Whatever went wrong, a hub without its feed is worse: retry, and say so
                # less and less often.
                failures += 1
                if failures & (failures - 1) == 0:
                    log.warning(
                        "following Redis at %s failed %d times, retrying: %r",
                        self._where,
                        failures,
                        exc,
                    )
                await asyncio.sleep(_backoff(failures))
            finally:
                await self._bounded(pubsub.aclose())
                await self._bounded(client.aclose())

    async def _follow_shards(
        self, editions: tuple[str, ...]
    ) -> AsyncIterator[EditionState | Event]:
        """Redis Cluster: each edition is followed on its own, on the shard that owns its
        slot (sharded pub/sub reaches only that shard), so a failover in one shard never
        holds up the editions of another. What they find meets in one queue."""
        queue: asyncio.Queue[EditionState | Event | _Ended] = asyncio.Queue(maxsize=1024)
        tasks = [
            asyncio.create_task(self._follow_edition(edition, queue), name=f"follow-{edition}")
            for edition in dict.fromkeys(editions)
        ]
        running = len(tasks)
        try:
            while running:
                update = await queue.get()
                if isinstance(update, _Ended):
                    running -= 1
                    if update.error is not None:
                        raise update.error
                    continue
                yield update
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow_edition(
        self, edition: str, queue: asyncio.Queue[EditionState | Event | _Ended]
    ) -> None:
        try:
            await self._follow_on_shard(edition, queue)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: the follower stops with it
            await queue.put(_Ended(exc))
        else:
            await queue.put(_Ended(None))

    async def _follow_on_shard(
        self, edition: str, queue: asyncio.Queue[EditionState | Event | _Ended]
    ) -> None:
        """SSUBSCRIBE on the master that owns the edition's slot, then catch up from the
        log. A lost connection, a MOVED answer or a `sunsubscribe` from Redis (the slot
        moved, or its master became a replica) all mean: ask the cluster again who owns
        the slot, subscribe there, and catch up."""
        channel = self._edition(edition).live
        seen: dict[str, Cursor] = {}
        heard: dict[str, bytes] = {}
        failures = 0
        while not self._closed:
            client: aioredis.Redis | None = None
            pubsub: PubSub | None = None
            try:
                if failures:
                    await self._refresh_slots()
                node = self._redis.get_node_from_key(channel)
                client = self._node_client(node.host, node.port)
                pubsub = client.pubsub()
                await self._subscribe(pubsub, [channel], sharded=True)
                for update in await self._catch_up(edition, seen, heard):
                    await queue.put(update)
                if failures:
                    log.info("following edition %s on %s again", edition, node.name)
                failures = 0
                async with aclosing(self._messages(pubsub)) as messages:
                    async for payload in messages:
                        event = Event.from_payload(payload)
                        for update in await self._deliver(event, seen, heard):
                            await queue.put(update)
            except (RedisError, RedisClusterException, OSError) as exc:
                failures += 1
                if failures & (failures - 1) == 0:
                    log.warning(
                        "following edition %s in Redis Cluster at %s failed %d times, retrying: %r",
                        edition,
                        self._where,
                        failures,
                        exc,
                    )
                await asyncio.sleep(_backoff(failures))
            finally:
                if pubsub is not None:
                    await self._bounded(pubsub.aclose())
                if client is not None:
                    await self._bounded(client.aclose())

    async def _refresh_slots(self) -> None:
        """Ask the cluster which master owns which slot now (one refresh at a time)."""
        async with self._slots_lock:
            if asyncio.get_running_loop().time() - self._slots_refreshed < 0.1:
                return
            await self._redis.nodes_manager.initialize()
            self._slots_refreshed = asyncio.get_running_loop().time()

    def _node_client(self, host: str, port: int) -> aioredis.Redis:
        assert self._target is not None
        return aioredis.Redis(
            host=host,
            port=port,
            **self._target.credentials(),
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    async def _subscribe(self, pubsub: PubSub, channels: list[str], sharded: bool = False) -> None:
        """Subscribe and wait for every confirmation, so no event can slip by before the
        log is read. Redis writes all confirmations of one SUBSCRIBE before anything else."""
        if sharded:
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)
        confirmation = "ssubscribe" if sharded else "subscribe"
        deadline = asyncio.get_running_loop().time() + self.socket_timeout
        confirmed = 0
        while confirmed < len(channels):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise RedisTimeoutError("no confirmation of SUBSCRIBE")
            message = await pubsub.get_message(timeout=left)
            if message is not None and message["type"] == confirmation:
                confirmed += 1

    async def _messages(self, pubsub: PubSub) -> AsyncIterator[bytes]:
        """Published payloads, read promptly (Redis drops slow subscribers). A connection
        that stays silent is pinged, and one that does not answer counts as lost."""
        loop = asyncio.get_running_loop()
        quiet_after = self.socket_timeout
        tick = min(0.5, quiet_after / 2)
        heard = loop.time()
        pinged = False
        while not self._closed:
            message = await pubsub.get_message(timeout=tick)
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
                if message["type"] in ("message", "smessage"):
                    yield message["data"]
                elif message["type"] == "sunsubscribe":
                    # Redis Cluster: the slot moved away from this node, or it became a
                    # replica. The follower subscribes again where the slot is now.
                    raise RedisConnectionError("the edition's slot left this node")
            elif now - heard > 2 * quiet_after:
                raise RedisTimeoutError(f"no answer to PING in {quiet_after:g} s")
            elif now - heard > quiet_after and not pinged:
                await pubsub.ping()
                pinged = True

    async def _catch_up(
        self, edition: str, seen: dict[str, Cursor], heard: dict[str, bytes] | None = None
    ) -> list[EditionState | Event]:
        """What the follower missed of one edition, or a fresh state to reset to.

        With `heard` (the payload of the last event passed on, per edition), the event at
        the cursor must still be in the log as it was heard: after a failover a new master
        can lack the newest events of the old one and number the next ones again, and a
        follower that trusted its cursor would drop those as duplicates."""
        since = seen.get(edition)
        last = None if heard is None or since is None else heard.get(edition)
        if since is not None and since.offset > 0 and last is not None:
            update = await self._read_since(edition, Cursor(since.epoch, since.offset - 1))
            if isinstance(update, list):
                if update and update[0].cursor == since and update[0].payload == last:
                    update = update[1:]
                else:
                    log.warning(
                        "the log of edition %s no longer holds event %s as this hub saw "
                        "it (a failover lost it): starting again from the store's state",
                        edition,
                        since,
                    )
                    update = await self._read_since(edition, None)
        else:
            update = await self._read_since(edition, since)
        if isinstance(update, EditionState):
            seen[edition] = update.cursor
            if heard is not None:
                newest = update.events[-1] if update.events else None
                if newest is not None and newest.cursor == update.cursor:
                    heard[edition] = newest.payload
                else:
                    heard.pop(edition, None)
            return [update]
        if update:
            seen[edition] = update[-1].cursor
            if heard is not None:
                heard[edition] = update[-1].payload
        return list(update)

    async def _deliver(
        self, event: Event, seen: dict[str, Cursor], heard: dict[str, bytes] | None = None
    ) -> list[EditionState | Event]:
        """The next event passes; an old one is a duplicate; anything else means a gap, which
        the log fills (the log already holds this event, as the same script wrote it)."""
        last = seen.get(event.edition)
        if last is None:
            return []
        if event.cursor.epoch == last.epoch:
            if event.cursor.offset <= last.offset:
                return []
            if event.cursor.offset == last.offset + 1:
                seen[event.edition] = event.cursor
                if heard is not None:
                    heard[event.edition] = event.payload
                return [event]
        return await self._catch_up(event.edition, seen, heard)

    @property
    def tokens(self) -> TokenStore:
        return _RedisTokens(self)

    @property
    def audit(self) -> AuditLog:
        return _RedisAudit(self)

    @property
    def client(self) -> Any:
        """The Redis client, for stores kept beside the broker's keys (webhooks)."""
        return self._redis


class _RedisTokens(TokenStore):
    """Tokens share a hash tag of their own, so both hashes and the audit stream of
    operations change in one script. When each was last used is a hash of its own, so
    noting it never races a revocation."""

    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker
        self._names = f"{broker.prefix}:{{tokens}}"
        self._digests = f"{broker.prefix}:{{tokens}}:digests"
        self._used = f"{broker.prefix}:{{tokens}}:used"
        self._audit = _operations_stream(broker.prefix)

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
        record = TokenRecord(name, digest, created, roles, editions, expires)
        stored = {"digest": digest, **record.scope()}
        if roles is None:  # the shape of a token from before roles
            stored = {"digest": digest, "created": created}
        entry = audit or trail.for_token("token.created", name)
        with self._broker._reachable():
            added = await self._broker._add_token_script(
                keys=[self._names, self._digests, self._audit],
                args=[
                    name,
                    digest,
                    json.dumps(stored),
                    entry.body_json(),
                    self._broker.audit_minid(),
                ],
            )
        if added == 0:
            raise BrokerError(f"a token named {name!r} exists already")
        if added == -1:
            raise BrokerError("this token secret is in use already")

    async def lookup(self, digest: str) -> TokenRecord | None:
        with self._broker._reachable():
            found = await self._broker._lookup_token_script(
                keys=[self._digests, self._names], args=[digest]
            )
        if not found:
            return None
        name, raw = found[0].decode(), found[1]
        if not raw:
            return TokenRecord(name, digest, "", revoked=True)
        record = TokenRecord.from_stored(name, json.loads(raw))
        if record.digest != digest:  # a secret that was rotated out
            return TokenRecord(name, digest, record.created, revoked=True)
        return record

    async def records(self) -> list[TokenRecord]:
        with self._broker._reachable():
            async with self._broker._redis.pipeline(transaction=False) as pipe:
                records, used = await pipe.hgetall(self._names).hgetall(self._used).execute()
        found = [
            TokenRecord.from_stored(name.decode(), json.loads(raw), last_used=_text(used.get(name)))
            for name, raw in records.items()
        ]
        return sorted((r for r in found if not r.revoked), key=lambda r: r.name)

    async def _change(self, op: str, name: str, audit: AuditEntry | None, *extra: str) -> bool:
        entry = audit or trail.for_token(f"token.{op}d", name)
        with self._broker._reachable():
            done = await self._broker._change_token_script(
                keys=[self._names, self._digests, self._audit],
                args=[op, name, entry.body_json(), self._broker.audit_minid(), *extra],
            )
        if done == -1:
            raise BrokerError("this token secret is in use already")
        return bool(done)

    async def revoke(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        return await self._change("revoke", name, audit)

    async def rotate(self, name: str, digest: str, *, audit: AuditEntry | None = None) -> bool:
        return await self._change("rotate", name, audit, digest)

    async def migrate(
        self,
        name: str,
        roles: tuple[str, ...],
        editions: tuple[str, ...] | None,
        *,
        audit: AuditEntry | None = None,
    ) -> bool:
        scope = json.dumps(None if editions is None else list(editions))
        return await self._change("migrate", name, audit, json.dumps(list(roles)), scope)

    async def touch(self, name: str, when: str) -> None:
        with self._broker._reachable():
            await self._broker._redis.hset(self._used, name, when)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _operations_stream(prefix: str) -> str:
    """The audit stream of everything that is not an item: in the tokens' slot."""
    return f"{prefix}:{{tokens}}:audit"


class _RedisAudit(AuditLog):
    """A stream per edition (in the edition's slot, written by the publish script) and
    one for other operations (in the tokens' slot). Stream IDs are Redis's clock, so an
    entry's `at` is its ID's time, and `from`/`to` are ranges of IDs. A page merges the
    streams newest first; its cursor is the (time, sequence, stream) of its last entry."""

    OPERATIONS = "ops"

    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    def _streams(self) -> dict[str, str]:
        streams = {edition: keys.audit for edition, keys in self._broker._keys.items()}
        streams[self.OPERATIONS] = _operations_stream(self._broker.prefix)
        return streams

    async def record(self, entry: AuditEntry) -> None:
        keys = self._broker._keys.get(entry.edition or "")
        stream = keys.audit if keys is not None else _operations_stream(self._broker.prefix)
        with self._broker._reachable():
            await self._broker._redis.xadd(
                stream,
                {"entry": entry.body_json()},
                minid=self._broker.audit_minid(),
                approximate=False,
            )

    async def query(self, query: AuditQuery, now: datetime) -> AuditPage:
        streams = self._streams()
        edition = query.edition or (edition_of(query.item) if query.item else None)
        if edition is not None:
            streams = {edition: streams[edition]} if edition in streams else {}
        after: tuple[int, int, str] | None = None
        if query.cursor is not None:
            position = trail.decode_cursor(query.cursor)
            if (
                len(position) != 4
                or position[0] != "r"
                or not all(isinstance(p, int) and p >= 0 for p in position[1:3])
                or not isinstance(position[3], str)
            ):
                raise AuditQueryError("cursor", "not a cursor from an earlier answer")
            after = (position[1], position[2], position[3])
        oldest = trail.cutoff(now, self._broker.audit_days)
        if query.since is not None and query.since > oldest:
            oldest = query.since
        low = _ms(oldest)
        high = _ms(query.until) if query.until is not None else None
        found: list[tuple[int, int, str, AuditEntry]] = []
        # Where each stream stopped being read; below the highest of them, some stream
        # was not read, so nothing below it is shown yet.
        frontiers: list[tuple[int, int, str]] = []
        with self._broker._reachable():
            for name, key in streams.items():
                entries, frontier = await self._scan(name, key, query, after, low, high)
                found += entries
                if frontier is not None:
                    frontiers.append(frontier)
        boundary = max(frontiers, default=None)
        eligible = sorted(
            (f for f in found if boundary is None or f[:3] >= boundary),
            key=lambda f: f[:3],
            reverse=True,
        )
        page = eligible[: query.limit]
        position: tuple[int, int, str] | None = None
        if len(eligible) > query.limit:
            position = page[-1][:3]
        elif boundary is not None:
            position = boundary
        cursor = None if position is None else trail.encode_cursor(["r", *position])
        return AuditPage([entry for *_, entry in page], cursor)

    async def _scan(
        self,
        name: str,
        key: str,
        query: AuditQuery,
        after: tuple[int, int, str] | None,
        low: int,
        high: int | None,
    ) -> tuple[list[tuple[int, int, str, AuditEntry]], tuple[int, int, str] | None]:
        """Up to `query.limit + 1` matching entries of one stream below the cursor, newest
        first, reading at most `_AUDIT_SCAN` entries; and where the reading stopped, or
        None when the stream has nothing more below."""
        top = "+" if high is None else f"{high}-18446744073709551615"
        if after is not None:
            bound = f"{after[0]}-{after[1]}"
            # Same time and sequence in two streams: the cursor's order is by stream name.
            mark = bound if name < after[2] else f"({bound}"
            if high is None or (after[0], after[1]) <= (high, 2**64 - 1):
                top = mark
        out: list[tuple[int, int, str, AuditEntry]] = []
        read = 0
        while True:
            batch = await self._broker._redis.xrevrange(key, top, f"{low}-0", count=_AUDIT_BATCH)
            for raw_id, fields in batch:
                ms, seq = (int(part) for part in raw_id.decode().split("-"))
                read += 1
                entry = AuditEntry.from_body(
                    json.loads(fields[b"entry"]), id=f"{name}:{ms}-{seq}", at=trail.at_iso(ms)
                )
                if query.matches(entry, datetime.fromtimestamp(ms / 1000, UTC)):
                    out.append((ms, seq, name, entry))
                    if len(out) > query.limit:
                        return out, (ms, seq, name)
                if read >= _AUDIT_SCAN:
                    return out, (ms, seq, name)
            if len(batch) < _AUDIT_BATCH:
                return out, None
            top = f"({batch[-1][0].decode()}"

    async def prune(self, now: datetime) -> int:
        minid = _ms(trail.cutoff(now, self._broker.audit_days))
        dropped = 0
        with self._broker._reachable():
            for key in self._streams().values():
                dropped += await self._broker._redis.xtrim(key, minid=minid, approximate=False)
        return dropped


@dataclass(frozen=True, slots=True)
class _Ended:
    """An edition's follower stopped: the broker closed (None), or a bug (the error)."""

    error: BaseException | None


def _published(change: Change, reply: list[Any]) -> Published:
    """Turn the publish script's answer into a result or the error it stands for."""
    status = reply[0]
    if status == b"published":
        return Published(change.item, Cursor(reply[1].decode(), int(reply[2])))
    if status == b"replayed":
        return Published(Item.from_dict(json.loads(reply[1])), None, replayed=True)
    if status == b"mismatch":
        raise IdempotencyMismatch(
            f"Idempotency-Key {change.idempotency_key!r} was used for a different request"
        )
    if status == b"pinlimit":
        raise PinLimitReached(change.item.edition, int(reply[1]))
    raise VersionConflict(change.item.id, int(reply[1]) if len(reply) > 1 else None)
