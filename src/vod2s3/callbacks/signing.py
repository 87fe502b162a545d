"""Callback signatures: ``base64(HMAC-SHA256(account secret, "<timestamp>.<body>"))``.

The timestamp is inside the signed text so a captured callback cannot be replayed later with a
fresh timestamp; receivers refuse timestamps more than a few minutes old. During a secret
rotation's grace period the header carries one signature per valid secret (as Stripe and Svix
do), so a receiver can switch to the new secret whenever it likes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "USER_AGENT",
    "callback_headers",
    "sign",
    "signature_header",
    "verify",
]

TIMESTAMP_HEADER = "X-Vod2s3-Timestamp"
DELIVERY_HEADER = "X-Vod2s3-Delivery"
SIGNATURE_HEADER = "X-Vod2s3-Signature"
USER_AGENT = "vod2s3-callbacks/1"
# A version prefix lets the scheme change later without receivers misreading new signatures.
SIGNATURE_VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """base64 of HMAC-SHA256 keyed with the secret's UTF-8 bytes over ``b"<timestamp>." + body``."""
    return _sign_text(secret, str(int(timestamp)), body)


def _sign_text(secret: str, timestamp_text: str, body: bytes) -> str:
    message = timestamp_text.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """``v1=<sig>``, or ``v1=<new> v1=<old>`` during a rotation (current secret first)."""
    if not secrets:
        raise ValueError("a callback needs at least one secret to sign with")
    signatures = dict.fromkeys(sign(secret, timestamp, body) for secret in secrets)
    return " ".join(f"{SIGNATURE_VERSION}={signature}" for signature in signatures)


def callback_headers(
    secrets: Sequence[str], timestamp: int, delivery_id: str, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(int(timestamp)),
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: signature_header(secrets, timestamp, body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does: the timestamp is recent and one of the v1 signatures matches."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp_text = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
    signatures = lowered.get(SIGNATURE_HEADER.lower(), "")
    # isdecimal() alone would accept non-ASCII digits, which int() reads but the sender never
    # writes; the signed text must be the exact bytes that were sent.
    if not (timestamp_text.isascii() and timestamp_text.isdecimal()):
        return False
    if abs(now - int(timestamp_text)) > tolerance:
        return False
    # The signed text is the header as received, as a receiver in any language would build it.
    expected = _sign_text(secret, timestamp_text, body).encode("ascii")
    found = False
    for part in signatures.split():
        version, _, value = part.partition("=")
        if version == SIGNATURE_VERSION and value.isascii():
            # Every candidate is compared so the time taken does not reveal which one matched.
            found |= hmac.compare_digest(expected, value.encode("ascii"))
    return found
