"""Which checks a store really verifies, found out by sending it a body that does not match.

For each check, cheapest first, one tiny PutObject to a temporary key carries a check that
does not fit its body: the CRC32C or the Content-MD5 of another body, or, for a signed
payload, the signature over another body of the same length (swapped after signing, as a
fault on the network would). A store that verifies the check refuses it; a store that
ignores it stores the object, which is deleted again. Payload signing is off for the
CRC32C and Content-MD5 probes, so that only the check under test could refuse.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vod2s3.s3.integrity import MODES, Mode, body_params, part_check

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

PROBE_PREFIX = ".vod2s3-integrity-probe/"
_SENT = b"vod2s3 integrity probe: checked"
_SWAPPED = b"vod2s3 integrity probe: CHANGED"
# What stores answer when a body does not match its check.
_REFUSALS = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidRequest", "BadRequest"}
)


class ProbeFailed(Exception):
    """The store could not be probed (no permission, no such bucket, unreachable)."""


def verifies(client: S3Client, mode: Mode, bucket: str) -> bool:
    """Whether the store refuses a body that does not match ``mode``'s check.

    ``client`` must sign payloads for "sha256" and must not for the other modes."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"

    def swap_body(request: Any, **_kwargs: Any) -> None:
        request.body = _SWAPPED

    # CRC32C and Content-MD5: the check of the other body. A signed payload: the signature
    # over this body, then the other one goes on the wire.
    check = part_check(mode, _SENT if mode == "sha256" else _SWAPPED)
    event = "before-send.s3.PutObject"
    if mode == "sha256":
        client.meta.events.register(event, swap_body)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=_SENT, **body_params(mode, check))
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code") or "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _REFUSALS or (status == 400 and "digest" in code.lower()):
            return True
        raise ProbeFailed(f"{code or status}: {error}") from error
    except BotoCoreError as error:  # unreachable, timed out: the upload will say so
        raise ProbeFailed(str(error)) from error
    finally:
        client.meta.events.unregister(event, swap_body)
    # Stored although it did not match: the check is not verified. Leave nothing behind.
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as error:
        log.warning("could not delete the integrity probe s3://%s/%s: %s", bucket, key, error)
    return False


def first_verified(client_for: Callable[[Mode], S3Client], bucket: str) -> Mode | None:
    """The cheapest check the store verifies, or None if it verifies none of them."""
    for mode in MODES:
        if verifies(client_for(mode), mode, bucket):
            return mode
    return None
