"""Signing a request as the seed's PHP example does. The customer's client signs with it and
the API's checks (api/signature.py) compute the same HMAC with it, so both sides share one
copy. It imports only the standard library and jsonenc: the light client ships it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from vod2s3.jsonenc import php_json_encode

__all__ = ["SIGNATURE_FIELD", "compute_signature", "sign_request"]

SIGNATURE_FIELD = "signature"


def compute_signature(secret: str, text: str) -> str:
    """base64 of HMAC-SHA256 keyed with the secret's bytes over the text's UTF-8 bytes."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_request(secret: str, request: Mapping[str, object]) -> dict[str, object]:
    """Sign like the seed's PHP example: HMAC over ``json_encode($request)``, then append
    ``signature`` as the last member."""
    if SIGNATURE_FIELD in request:
        # PHP would sign the old signature too and overwrite it in place: never verifiable.
        raise ValueError("request already has a signature")
    signed = dict(request)
    signed[SIGNATURE_FIELD] = compute_signature(secret, php_json_encode(request))
    return signed
