"""aws.retry: queue a failed or cancelled upload again, under the same id."""

from __future__ import annotations

import logging
from typing import Any

from vod2s3.api.commands.lookup import upload_id_field
from vod2s3.api.context import Call, Services
from vod2s3.errors import Conflict, NotFound
from vod2s3.logs import upload_fields
from vod2s3.records import record_view

MESSAGE = "AWS Upload Queued"

log = logging.getLogger("vod2s3.api")


def aws_retry(services: Services, call: Call) -> tuple[str, Any]:
    upload_id = upload_id_field(call.obj)
    row, changed = services.uploads.retry(call.account.id, upload_id)
    if row is None:
        raise NotFound(f"No upload with id {upload_id}")
    if not changed:
        raise Conflict(
            f"Upload {upload_id} is {row.state}: only failed or cancelled uploads can be retried"
        )
    log.info(
        "upload %s (cdn %s): queued again by aws.retry",
        row.id,
        row.cdn_id,
        extra=upload_fields(row, "retried", "queued"),
    )
    services.queued()
    return MESSAGE, record_view(row)
