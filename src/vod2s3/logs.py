"""Logging set-up: plain text (the default) or one JSON object per line
(``VOD2S3_LOG_FORMAT=json``).

A JSON line has ``ts``, ``level``, ``logger`` and ``message``, then the upload's fields a
call site passed with ``extra=`` (see :func:`upload_fields`): only the names in
:data:`FIELDS` are written, so nothing else a record carries can leak into the output.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from vod2s3.config import LOG_FORMATS

__all__ = ["FIELDS", "LOG_FORMATS", "JsonFormatter", "setup_logging", "upload_fields"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The extra fields a JSON line may carry, in this order.
FIELDS = (
    "event",
    "upload_id",
    "cdn",
    "state",
    "from_state",
    "attempt",
    "error_code",
    "delivery_id",
    "callback_state",
    "worker",
    # the access log (api/access.py)
    "method",
    "path",
    "status",
    "duration_ms",
    "client",
    "command",
)
# boto's own debug lines can carry request headers: keep them quiet.
QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug", "alembic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the root logger: one handler on stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def upload_fields(
    row: Any,
    event: str,
    state: str | None = None,
    from_state: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """``extra=`` for a log line about an upload row (its id and cdn, never its secrets)."""
    fields: dict[str, Any] = {
        "event": event,
        "upload_id": int(row.id),
        "cdn": int(row.cdn_id),
        "state": state,
        "from_state": from_state,
    }
    fields.update(more)
    return fields
