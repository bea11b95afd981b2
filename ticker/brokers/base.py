"""One broker interface: publish a change atomically with its history, read history from a
cursor, follow live events. The embedded and Redis brokers both implement it, and one
conformance suite (tests/test_broker_conformance.py) holds them to the same behaviour.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..archive import ArchivePage, ArchiveQuery
from ..audit import AuditEntry, AuditPage, AuditQuery
from ..events import ChangeKind, Cursor, EditionState, Event
from ..items import Item, edition_of


class BrokerError(Exception):
    """Base of every error a broker raises on purpose."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached now; the caller may retry later (HTTP 503)."""


class BrokerMisconfigured(BrokerError):
    """The broker answers but refuses us (a wrong password, a wrong database, a Redis too
    old): retrying cannot help, so the process stops with this message."""


class VersionConflict(BrokerError):
    """The item changed (or vanished) since it was read; nothing was written."""

    def __init__(self, item_id: str, current: int | None) -> None:
        super().__init__(f"{item_id} is at version {current}" if current else f"{item_id} is gone")
        self.item_id = item_id
        self.current = current


class IdempotencyMismatch(BrokerError):
    """An Idempotency-Key was reused for a different request; nothing was written."""


class PinLimitReached(BrokerError):
    """The edition has as many pinned live items as it may; nothing was written."""

    def __init__(self, edition: str, limit: int) -> None:
        super().__init__(f"edition {edition} has {limit} pinned items already")
        self.edition = edition
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Change:
    """A change to publish. `expected_version` is the version the change was made from:
    None for a new item, which must not exist yet.

    `max_pinned`: a pinned item is refused (PinLimitReached) when the edition has that many
    other pinned live items; None checks nothing. `scheduled_version`: the post releases
    the scheduled item at that version, and only if it is still scheduled at that version
    (VersionConflict otherwise), so exactly one of several publishers releases it."""

    kind: ChangeKind
    item: Item
    expected_version: int | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    # Written with the change, in the same atomic step; without one the store writes
    # `audit.for_change` (the expiry sweeper's changes are the service's own).
    audit: AuditEntry | None = None
    max_pinned: int | None = None
    scheduled_version: int | None = None


@dataclass(frozen=True, slots=True)
class Published:
    item: Item
    cursor: Cursor | None  # None when an idempotent retry returned the earlier result
    replayed: bool = False


def replayed_item(
    item_id: str, version: int, live: Item | None, history: Iterable[bytes | str]
) -> Item:
    """The answer to an idempotent retry. Both stores keep only the fingerprint, the item's
    id and its version for a key, not a copy of the item, so the item as first published
    is rebuilt from what is still there:

    1. the live item, if it is still at that version;
    2. else its event at that version in the retained history (`history`: event payloads,
       newest first);
    3. else the live item as it is now (it was corrected since);
    4. else the item's newest event still retained (withdrawn or expired);
    5. else a minimal item that carries only the id and the version (its status says it is
       no longer live, its other fields are empty).
    """
    if live is not None and live.version == version:
        return live
    newest: Item | None = None
    for payload in history:
        item = Event.from_payload(payload).item
        if item.get("id") != item_id:
            continue
        if item.get("version") == version:
            return Item.from_dict(item)
        newest = newest or Item.from_dict(item)
    if live is not None:
        return live
    if newest is not None:
        return newest
    return Item(
        id=item_id,
        edition=edition_of(item_id) or "",
        headline="",
        source=None,
        link=None,
        urgency=0,
        regions=(),
        categories=(),
        created="",
        updated="",
        version=version,
        status="withdrawn",
        expires=None,
        editor="",
    )


class Broker(abc.ABC):
    """Where items and their history live, and how changes reach every hub."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and prepare storage; raises BrokerUnavailable when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker answers now."""

    @abc.abstractmethod
    async def publish(self, change: Change) -> Published:
        """Store the item, append the event to the log and announce it, as one atomic step.

        Raises VersionConflict, IdempotencyMismatch or BrokerUnavailable; on any of them
        nothing was written. With an idempotency key seen before, returns the first result.
        """

    @abc.abstractmethod
    async def get(self, item_id: str) -> Item | None:
        """The live item with this id, or None."""

    @abc.abstractmethod
    async def state(self, edition: str) -> EditionState:
        """The edition's cursor, live items and retained history, read atomically."""

    @abc.abstractmethod
    async def live(self, edition: str) -> tuple[Cursor, list[dict[str, Any]]]:
        """The edition's cursor and live items, without the history."""

    @abc.abstractmethod
    async def due(self, now: datetime, limit: int = 100) -> list[Item]:
        """Live items whose expiry has passed, soonest first."""

    @abc.abstractmethod
    async def archive(self, query: ArchiveQuery) -> ArchivePage:
        """A page of the edition's archive: every item ever posted, at its latest version
        and status, newest first, filtered by the query's terms and key bounds. Examines at
        most `archive.SCAN_BUDGET` records, so a page may be short and still have a next."""

    @abc.abstractmethod
    async def prune_archive(self, edition: str, before: str) -> int:
        """Remove from the archive the items posted before the key `before` that are no
        longer live; returns how many. Works in batches, so publishes go on meanwhile."""

    async def cursor(self, edition: str) -> Cursor:
        """Where the edition's log stands; brokers answer it cheaper than `live`, for the
        conditional requests that ask only whether anything changed."""
        cursor, _ = await self.live(edition)
        return cursor

    async def next_expiry(self) -> datetime | None:
        """When the soonest live item expires (possibly in the past), or None when none
        will. The expiry sweeper sleeps until then; a broker that cannot tell returns None
        and is swept every interval."""
        return None

    # --- scheduled items: kept apart from the live ones, never seen by readers ------------

    @abc.abstractmethod
    async def schedule(
        self,
        item: Item,
        expected_version: int | None = None,
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> Published:
        """Keep a scheduled item (status "scheduled", `publish_at` set) until it is due.

        A new one (`expected_version` None) must not exist, scheduled or live; an edit must
        find it scheduled at `expected_version`. Raises VersionConflict otherwise, and
        IdempotencyMismatch as `publish` does. Nothing reaches the log or the readers.
        The result's cursor is None."""

    @abc.abstractmethod
    async def unschedule(self, item_id: str, expected_version: int) -> None:
        """Drop a scheduled item before it goes live; VersionConflict unless it is still
        scheduled at that version."""

    @abc.abstractmethod
    async def get_scheduled(self, item_id: str) -> Item | None:
        """The scheduled item with this id, or None."""

    @abc.abstractmethod
    async def scheduled(self, edition: str) -> list[Item]:
        """The edition's scheduled items, soonest first."""

    @abc.abstractmethod
    async def due_scheduled(self, now: datetime, limit: int = 100) -> list[Item]:
        """Scheduled items whose time has come, soonest first."""

    @abc.abstractmethod
    async def next_scheduled(self) -> datetime | None:
        """When the soonest scheduled item is due (possibly in the past), or None."""

    @abc.abstractmethod
    def follow(self, editions: tuple[str, ...]) -> AsyncIterator[EditionState | Event]:
        """Every edition's state once, then its events in order, forever.

        Across a lost connection the broker fills the gap from the log itself. When it
        cannot (history trimmed, or the log was lost and restarted with a new epoch) it
        yields a fresh EditionState instead: the follower must reset to it.
        """

    @property
    @abc.abstractmethod
    def tokens(self) -> TokenStore:
        """The editor tokens kept in the same store, on the same connection."""

    @property
    @abc.abstractmethod
    def audit(self) -> AuditLog:
        """The audit trail kept in the same store."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored. `roles` None is a token made before roles existed (the
    publisher gives it TICKER_LEGACY_TOKEN_ROLE); `editions` None is every edition.
    `revoked` is true for a revoked token, and for a secret that was rotated out."""

    name: str
    digest: str
    created: str
    roles: tuple[str, ...] | None = None
    editions: tuple[str, ...] | None = None
    expires: str | None = None
    last_used: str | None = None
    revoked: bool = False

    def scope(self) -> dict[str, Any]:
        """What the stores keep besides the name and the digest."""
        return {
            "created": self.created,
            "roles": None if self.roles is None else list(self.roles),
            "editions": None if self.editions is None else list(self.editions),
            "expires": self.expires,
        }

    @classmethod
    def from_stored(
        cls, name: str, data: dict[str, Any], *, last_used: str | None = None
    ) -> TokenRecord:
        roles, editions = data.get("roles"), data.get("editions")
        return cls(
            name=name,
            digest=data.get("digest", ""),
            created=data.get("created", ""),
            roles=None if roles is None else tuple(roles),
            editions=None if editions is None else tuple(editions),
            expires=data.get("expires"),
            last_used=last_used,
            revoked=bool(data.get("revoked")),
        )


class TokenStore(abc.ABC):
    """Editor tokens, stored with the items so that every publisher process sees the same
    set, and a revocation takes effect on the next request everywhere.

    Every operation that changes a token takes the audit entry that records it, and
    writes both in one atomic step.
    """

    @abc.abstractmethod
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
        """Raises BrokerError when a token that is not revoked has the name. (A revoked
        name may be given again; the old secret stays revoked.)"""

    @abc.abstractmethod
    async def lookup(self, digest: str) -> TokenRecord | None:
        """The token with this digest, revoked or not, in one round trip; None when no
        token ever had it. Answered from the store every time: no cache, so a revocation
        counts on the next request in every process."""

    async def owner(self, digest: str) -> str | None:
        """The name of the token with this digest, unless revoked; or None."""
        record = await self.lookup(digest)
        return None if record is None or record.revoked else record.name

    @abc.abstractmethod
    async def records(self) -> list[TokenRecord]:
        """The tokens that are not revoked, by name, with when each was last used."""

    async def names(self) -> list[tuple[str, str]]:
        """(name, created) pairs, by name."""
        return [(record.name, record.created) for record in await self.records()]

    @abc.abstractmethod
    async def revoke(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        """False when no token that is not revoked has this name."""

    @abc.abstractmethod
    async def rotate(self, name: str, digest: str, *, audit: AuditEntry | None = None) -> bool:
        """Give the token a new secret (its digest); the old one stops working. False when
        no token that is not revoked has this name."""

    @abc.abstractmethod
    async def migrate(
        self,
        name: str,
        roles: tuple[str, ...],
        editions: tuple[str, ...] | None,
        *,
        audit: AuditEntry | None = None,
    ) -> bool:
        """Give a token made before roles existed its roles and scope. False when the
        token is revoked, unknown, or has roles already."""

    @abc.abstractmethod
    async def touch(self, name: str, when: str) -> None:
        """Note that the token was used (callers do it at most once a minute)."""


class AuditLog(abc.ABC):
    """The audit trail: append and read, never edit. Entries older than the retention
    (TICKER_AUDIT_DAYS) are dropped as new ones are written, and by `prune`."""

    @abc.abstractmethod
    async def record(self, entry: AuditEntry) -> None:
        """Append an entry for an operation that has no atomic step of its own here
        (a setting changed elsewhere). Item and token changes write theirs themselves."""

    @abc.abstractmethod
    async def query(self, query: AuditQuery, now: datetime) -> AuditPage:
        """Entries that match, newest first, one page at a time. Raises
        audit.AuditQueryError for a cursor this store did not give."""

    @abc.abstractmethod
    async def prune(self, now: datetime) -> int:
        """Drop entries past the retention; how many (where the store can tell)."""
