"""The upload record as customers see it, in `aws.status` and in callbacks."""

from __future__ import annotations

from typing import Any

from vod2s3.clock import format_timestamp
from vod2s3.contract import RESULT_KEYS
from vod2s3.store.rows import UploadRecord


def progress_percent(state: str, bytes_uploaded: int, bytes_total: int) -> int:
    if state == "completed":
        return 100
    if bytes_total <= 0:
        return 0
    return min(100, bytes_uploaded * 100 // bytes_total)


def record_view(row: UploadRecord) -> dict[str, Any]:
    """The original ScaleEngine fields first, with their original meanings and formats,
    then the fields vod2s3 adds."""
    results = row.results
    return {
        "id": row.id,
        "cdn_id": row.cdn_id,
        "path": row.path,
        "destination_path": row.destination_path,
        "metadata": dict(row.metadata),
        "acl": row.acl,
        "callback": row.callback,
        "message": row.message,
        "results": {key: str(results.get(key, "")) for key in RESULT_KEYS} if results else {},
        "created": format_timestamp(row.created),
        "last_updated": format_timestamp(row.last_updated),
        "status": int(row.status),
        "bucket": row.bucket,
        "state": row.state,
        "attempts": int(row.attempts),
        "bytes_total": int(row.bytes_total),
        "bytes_uploaded": int(row.bytes_uploaded),
        "progress": progress_percent(row.state, row.bytes_uploaded, row.bytes_total),
        "error_code": row.error_code,
        "checksum": row.checksum,
        "integrity": row.integrity,
        "callback_state": row.callback_state,
        "callback_attempts": int(row.callback_attempts),
        "callback_status": int(row.callback_status),
        "callback_error": row.callback_error,
        "started": format_timestamp(row.started) or None,
        "finished": format_timestamp(row.finished) or None,
    }
