"""aws.cancel: stop a queued or running upload."""

from __future__ import annotations

import logging
from typing import Any

from vod2s3.api.commands.lookup import upload_id_field
from vod2s3.api.context import Call, Services
from vod2s3.errors import Conflict, NotFound
from vod2s3.logs import upload_fields
from vod2s3.records import record_view

MESSAGE = "AWS Upload Cancelled"

log = logging.getLogger("vod2s3.api")


def aws_cancel(services: Services, call: Call) -> tuple[str, Any]:
    upload_id = upload_id_field(call.obj)
    row, changed = services.uploads.cancel(call.account.id, upload_id)
    if changed and row is not None:
        services.metrics.upload_finished("cancelled")
        log.info(
            "upload %s (cdn %s): cancelled",
            row.id,
            row.cdn_id,
            extra=upload_fields(row, "cancelled", "cancelled"),
        )
    if row is None:
        raise NotFound(f"No upload with id {upload_id}")
    # Cancelling twice is one cancel: the second call answers with the same record.
    if row.state != "cancelled":
        raise Conflict(f"Upload {upload_id} is already {row.state}: there is nothing to cancel")
    return MESSAGE, record_view(row)
