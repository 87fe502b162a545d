"""One handler per API command. A handler takes the services and an authenticated call and
returns (message, data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vod2s3.api.commands.cancel import aws_cancel
from vod2s3.api.commands.retry import aws_retry
from vod2s3.api.commands.status import aws_status
from vod2s3.api.commands.upload import aws_upload
from vod2s3.api.context import Call, Services

Handler = Callable[[Services, Call], tuple[str, Any]]

COMMANDS: dict[str, Handler] = {
    "aws.upload": aws_upload,
    "aws.status": aws_status,
    "aws.cancel": aws_cancel,
    "aws.retry": aws_retry,
}
