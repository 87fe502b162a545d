"""The delivery loop: claim a due callback, POST it signed, record what happened.

At least once: a deliverer that dies mid-delivery leaves a lease that expires, and the next
one sends the same body with the same delivery id. Delivery never changes an upload's
outcome; it only writes the record's callback fields.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from vod2s3.accounts import AccountStore
from vod2s3.callbacks.http import DeliveryResult, post
from vod2s3.callbacks.schedule import delay_after
from vod2s3.callbacks.signing import callback_headers
from vod2s3.callbacks.ssrf import Network, Resolver, system_resolver
from vod2s3.clock import Clock
from vod2s3.crypto import SecretBox
from vod2s3.errors import NotFound
from vod2s3.metrics import Metrics
from vod2s3.records import record_view
from vod2s3.store.outage import OutageLog
from vod2s3.store.outbox import CallbackOutbox, Delivery
from vod2s3.store.records import RecordStore
from vod2s3.store.rows import UploadRecord

log = logging.getLogger("vod2s3.callbacks")


def callback_body(upload_row: UploadRecord) -> str:
    """SPEC §5: the outcome in the API's own envelope shape, with the record as aws.status
    shows it."""
    record = record_view(upload_row)
    status = "success" if record["state"] == "completed" else "failure"
    return json.dumps({"status": status, "message": record["message"], "data": record})


@dataclass
class Deliverer:
    outbox: CallbackOutbox
    uploads: RecordStore
    accounts: AccountStore
    box: SecretBox
    clock: Clock
    allow: tuple[Network, ...]
    owner: str
    timeout: float = 10.0
    lease: timedelta = timedelta(seconds=60)
    resolver: Resolver = system_resolver
    poll_interval: float = 1.0
    metrics: Metrics = field(default_factory=Metrics)

    def deliver_one(self) -> bool:
        """Attempt one due delivery; False when none is due."""
        row = self.outbox.claim(self.owner, self.lease)
        if row is None:
            return False
        body = row.body if row.body is not None else self._fix_body(row)
        if body is None:
            return True  # the upload is gone; the lease lapses and nothing is sent
        try:
            secrets = self.accounts.get_by_id(row.account_id).api_secrets(
                self.box, self.clock.now()
            )
        except NotFound:
            self.outbox.give_up(row.id, self.owner, 0, "the account no longer exists")
            self.metrics.callback_delivery("failed")
            return True
        payload = body.encode("utf-8")
        headers = callback_headers(secrets, int(self.clock.unix()), row.delivery_id, payload)
        try:
            result = post(
                row.url,
                payload,
                headers,
                allow=self.allow,
                timeout=self.timeout,
                resolver=self.resolver,
            )
        except Exception as error:
            # A bug here must still count as an attempt, or the delivery would be claimed
            # again every lease period, for ever.
            log.exception("callback %s: unexpected error", row.delivery_id)
            result = DeliveryResult(False, 0, f"internal error ({type(error).__name__})")
        self._record(row, result)
        return True

    def _fix_body(self, row: Delivery) -> str | None:
        upload_row = self.uploads.get_any(row.upload_id)
        if upload_row is None:
            return None
        body = callback_body(upload_row)
        self.outbox.fix_body(row.id, self.owner, body)
        return body

    def _record(self, row: Delivery, result: DeliveryResult) -> None:
        extra = {"event": "callback", "upload_id": row.upload_id, "delivery_id": row.delivery_id}
        if result.delivered:
            self.outbox.delivered(row.id, self.owner, result.status)
            self.metrics.callback_delivery("delivered")
            log.info(
                "callback %s for upload %s delivered",
                row.delivery_id,
                row.upload_id,
                extra={**extra, "callback_state": "delivered"},
            )
            return
        delay = delay_after(row.attempts)
        if delay is None:
            self.outbox.give_up(row.id, self.owner, result.status, result.error)
            self.metrics.callback_delivery("failed")
            log.warning(
                "callback %s for upload %s failed for good: %s",
                row.delivery_id,
                row.upload_id,
                result.error,
                extra={**extra, "callback_state": "failed"},
            )
            return
        self.outbox.retry_later(row.id, self.owner, delay, result.status, result.error)
        self.metrics.callback_delivery("retry")
        log.info(
            "callback %s for upload %s: %s; next try in %s",
            row.delivery_id,
            row.upload_id,
            result.error,
            delay,
            extra={**extra, "callback_state": "pending"},
        )

    def run(self, stopping: threading.Event) -> None:
        outage = OutageLog("callback deliverer", log, self.poll_interval)
        while not stopping.is_set():
            try:
                busy = self.deliver_one()
                outage.succeeded()
            except Exception as error:
                # A database hiccup: the lease lapses and the delivery is tried again.
                outage.failed(error)
                busy = False
            if not busy:
                stopping.wait(self.poll_interval)
