"""Who is calling: the required fields, the clock window, the key and the signature."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vod2s3.accounts import Account
from vod2s3.api.context import Call, Services
from vod2s3.api.fields import required_int, required_str
from vod2s3.api.signature import verify_signature
from vod2s3.errors import ClockSkew, DisabledAccount, MissingField, Unauthorized, Vod2s3Error

# One message for an unknown key, a key of another account and a wrong signature, so that
# a caller cannot learn which keys exist.
BAD_CREDENTIALS = (
    "Invalid api_key, cdn or signature: sign the JSON request (without 'signature') with "
    "HMAC-SHA256 using your API secret, base64-encode it, and send it as 'signature'"
)


_DECOY_SECRET = secrets.token_hex(32)


def authenticate(services: Services, raw: str, obj: dict[str, Any]) -> Call:
    api_key = required_str(obj, "api_key")
    cdn = required_int(obj, "cdn")
    timestamp = required_int(obj, "timestamp")
    signature = obj.get("signature")
    if signature is None or signature == "":
        raise MissingField("Field 'signature' is required")
    _check_clock(services, timestamp)
    if not isinstance(signature, str):
        # A signature that is not even a string is a wrong signature: the same answer.
        raise Unauthorized(BAD_CREDENTIALS)

    account = services.accounts.find_by_api_key(api_key)
    if account is None or account.cdn != cdn:
        # Do the signature work anyway, so an unknown key is not answered measurably
        # sooner than a wrong secret.
        verify_signature([_DECOY_SECRET], raw, obj, signature)
        raise Unauthorized(BAD_CREDENTIALS)
    valid_secrets = account.api_secrets(services.box, services.clock.now())
    if not verify_signature(valid_secrets, raw, obj, signature):
        raise Unauthorized(BAD_CREDENTIALS)
    with answered_as(account):
        # Only a caller who proved the secret learns that the account is disabled.
        if account.disabled:
            raise DisabledAccount("This account is disabled: contact the service operator")
        services.limiter.check(account.id, signature)
    return Call(account=account, obj=obj, signature=signature)


@contextmanager
def answered_as(account: Account) -> Iterator[None]:
    """Failures from here on are the authenticated account's: they carry its choice of
    HTTP status for failures. Before authentication only the service's setting applies."""
    try:
        yield
    except Vod2s3Error as error:
        error.failure_status = account.failure_status
        raise


def _check_clock(services: Services, timestamp: int) -> None:
    window = services.settings.timestamp_window
    skew = timestamp - services.clock.unix()
    if abs(skew) > window:
        direction = "ahead of" if skew > 0 else "behind"
        raise ClockSkew(
            f"Field 'timestamp' is {math.ceil(abs(skew))} s {direction} the server's clock "
            f"(at most {window} s allowed): sign each request with the current unix time "
            "and keep your clock in sync (NTP)"
        )
