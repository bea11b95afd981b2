"""The one place where webhook operations are recorded for the audit trail.

Every operation on a webhook (create, delete, enable, test, and the worker's automatic
disable) calls `record_audit` once. It writes a log line now; wiring it to a stored audit
record changes this function only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("ticker.audit")


async def record_audit(actor: str, action: str, webhook_id: str, details: dict[str, Any]) -> None:
    """Record that `actor` (an editor's name, or `system` for the worker) did `action`
    (`webhook.create`, `webhook.delete`, `webhook.enable`, `webhook.test`,
    `webhook.auto_disable`) to a webhook."""
    log.info(
        "audit %s",
        json.dumps(
            {"actor": actor, "action": action, "webhook": webhook_id, **details},
            ensure_ascii=False,
            sort_keys=True,
        ),
    )
