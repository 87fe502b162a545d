"""The upload id field that aws.status, aws.cancel and aws.retry share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vod2s3.api.fields import optional_int
from vod2s3.errors import BadRequest


def upload_id_field(obj: Mapping[str, Any]) -> int:
    if obj.get("id") in (None, ""):
        raise BadRequest("Field 'id' is required: the id that aws.upload returned")
    return optional_int(obj, "id", 0, 1)
