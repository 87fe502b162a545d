"""aws.status: the account's latest upload requests, or one of them."""

from __future__ import annotations

from typing import Any

from vod2s3.api.commands.lookup import upload_id_field
from vod2s3.api.context import Call, Services
from vod2s3.api.fields import optional_int, optional_str
from vod2s3.errors import BadRequest, NotFound
from vod2s3.records import record_view
from vod2s3.store.schema import UPLOAD_STATES

MESSAGE = "Found AWS Status"


def aws_status(services: Services, call: Call) -> tuple[str, Any]:
    obj, account = call.obj, call.account
    if obj.get("id") not in (None, ""):
        upload_id = upload_id_field(obj)
        row = services.uploads.get(account.id, upload_id)
        if row is None:
            # Another account's id gets exactly this answer too.
            raise NotFound(f"No upload with id {upload_id}")
        return MESSAGE, record_view(row)

    limit = optional_int(obj, "limit", 25, 1, 1000)
    offset = optional_int(obj, "offset", 0, 0, 10**9)
    state = optional_str(obj, "state") or None
    if state is not None and state not in UPLOAD_STATES:
        raise BadRequest(f"Field 'state' must be one of {', '.join(UPLOAD_STATES)}")
    rows = services.uploads.latest(account.id, limit, offset, state)
    return MESSAGE, [record_view(row) for row in rows]
