"""Who may read /metrics: anyone, or, with VOD2S3_METRICS_TOKEN, whoever sends it as
``Authorization: Bearer …`` (Prometheus's ``authorization`` setting)."""

from __future__ import annotations

import hmac


def metrics_allowed(token: str, authorization: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    )
