"""Callbacks to customers when an upload ends: who may be called (``ssrf``), how the body is
signed (``signing``), and the POST itself (``http``). The outbox and delivery loop build on
these."""

from vod2s3.callbacks.http import DeliveryResult, post
from vod2s3.callbacks.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    callback_headers,
    sign,
    signature_header,
    verify,
)
from vod2s3.callbacks.ssrf import (
    CallbackRefused,
    CheckedTarget,
    Network,
    Resolver,
    address_problem,
    check_url_literal,
    parse_literal_ip,
    resolve_checked,
    system_resolver,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallbackRefused",
    "CheckedTarget",
    "DeliveryResult",
    "Network",
    "Resolver",
    "address_problem",
    "callback_headers",
    "check_url_literal",
    "parse_literal_ip",
    "post",
    "resolve_checked",
    "sign",
    "signature_header",
    "system_resolver",
    "verify",
]
