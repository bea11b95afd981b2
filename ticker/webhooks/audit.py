"""The one place where webhook operations are written to the audit trail.

Every operation on a webhook (created, deleted, enabled, tested, and the worker's
automatic disable) calls `record_audit` once, after it took effect. The webhook's own
keys and the trail are apart, so the entry cannot be written in the same step: when the
trail cannot be written, the operation stands and the failure is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import audit
from ..brokers.base import Broker, BrokerError

log = logging.getLogger("ticker.audit")

SYSTEM = audit.Request(actor=audit.SYSTEM, role=audit.SYSTEM)


async def record_audit(
    broker: Broker,
    by: audit.Request,
    action: str,
    webhook_id: str,
    changes: dict[str, list[Any]],
) -> None:
    """Record that `by` did `action` (`webhook.created`, `webhook.deleted`,
    `webhook.enabled`, `webhook.tested`, `webhook.disabled`) to a webhook; `changes` holds
    [before, after] per field, never a secret."""
    entry = audit.for_operation(action, subject=webhook_id, by=by, changes=changes)
    try:
        await broker.audit.record(entry)
    except BrokerError as exc:
        log.error(
            "could not record %s of webhook %s in the audit trail: %s", action, webhook_id, exc
        )
