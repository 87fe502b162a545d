"""Signed commands that change something are single-use: a replay of the same signed
aws.cancel or aws.retry, within the timestamp window, is answered with the first answer and
changes nothing. (aws.upload is single-use through its record: the same signature finds the
upload it queued.)

Two identical requests arriving at the same moment may both run; each of these commands
then finds the state the other left and changes nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vod2s3.api.context import Call, Services
from vod2s3.errors import Conflict, DatabaseUnavailable, NotFound, Vod2s3Error

SINGLE_USE = frozenset({"aws.cancel", "aws.retry"})


# The code of a failure remembered before codes were (migration 0009), by its status.
_CODE_OF_STATUS = {404: NotFound.api_code, 409: Conflict.api_code}


class AnsweredBefore(Vod2s3Error):
    """The failure the first arrival of this signed request got, given again."""

    def __init__(self, message: str, http_status: int, api_code: str | None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.api_code = api_code or _CODE_OF_STATUS.get(http_status, Vod2s3Error.api_code)


def run_once(
    services: Services,
    call: Call,
    command: str,
    run: Callable[[Services, Call], tuple[str, Any]],
) -> tuple[str, Any]:
    answers = services.answers
    first = answers.recall(call.account.id, call.signature)
    if first is not None:
        if first.status == 200:
            return first.message, first.data
        raise AnsweredBefore(first.message, first.status, first.code)
    try:
        message, data = run(services, call)
    except DatabaseUnavailable:
        raise  # nothing was decided: a retry of the same request may still act
    except Vod2s3Error as error:
        answers.remember(
            call.account.id,
            call.signature,
            command,
            error.http_status,
            error.message,
            None,
            error.api_code,
        )
        raise
    answers.remember(call.account.id, call.signature, command, 200, message, data)
    return message, data
