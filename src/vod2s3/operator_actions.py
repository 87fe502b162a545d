"""An operator's cancel or retry of any account's upload: `vod2s3 uploads cancel/retry` and
the dashboard's buttons. Each acts on the upload's account's behalf through the same store
calls as the customer's aws.cancel and aws.retry, so the record, its callback and the
worker's reaction are the same whoever asked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from vod2s3.logs import upload_fields
from vod2s3.metrics import Metrics
from vod2s3.store.records import RecordStore

log = logging.getLogger("vod2s3.operator")

Action = Literal["cancel", "retry"]
ACTIONS: tuple[Action, ...] = ("cancel", "retry")


@dataclass(frozen=True)
class ActionOutcome:
    upload_id: int
    action: Action
    found: bool
    changed: bool
    state: str  # the upload's state afterwards ("" when not found)

    def describe(self) -> str:
        """One line for the operator: what happened, or why nothing did."""
        if not self.found:
            return f"upload {self.upload_id}: not found"
        if self.changed:
            return f"upload {self.upload_id}: {_DONE[self.action]}"
        return f"upload {self.upload_id}: {_REFUSED[self.action].format(self.state)}"


_DONE = {"cancel": "cancelled", "retry": "queued again"}
_REFUSED = {
    "cancel": "already {}, not cancelled (only a queued or uploading upload can be)",
    "retry": "{}, not retried (only a failed or cancelled upload can be)",
}


def act(records: RecordStore, metrics: Metrics, action: Action, upload_id: int) -> ActionOutcome:
    account_id = records.account_of(upload_id)
    if account_id is None:
        return ActionOutcome(upload_id, action, found=False, changed=False, state="")
    change = records.cancel if action == "cancel" else records.retry
    record, changed = change(account_id, upload_id)
    if record is None:  # deleted in between
        return ActionOutcome(upload_id, action, found=False, changed=False, state="")
    if changed:
        if action == "cancel":
            metrics.upload_finished("cancelled")
        log.info(
            "upload %s (cdn %s): %s by the operator",
            record.id,
            record.cdn_id,
            _DONE[action],
            extra=upload_fields(record, f"operator_{action}", record.state),
        )
    return ActionOutcome(upload_id, action, found=True, changed=changed, state=record.state)
