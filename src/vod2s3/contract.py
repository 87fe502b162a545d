"""Names the ScaleEngine-compatible API fixes, shared by the uploader that fills them and the
record that shows them."""

from __future__ import annotations

# The keys of the customer-visible `results` object (SPEC §3.2), in the order records show them.
RESULT_KEYS = (
    "Bucket",
    "ETag",
    "Expiration",
    "Key",
    "Location",
    "ObjectURL",
    "RequestCharged",
    "SSEKMSKeyId",
    "ServerSideEncryption",
    "VersionId",
)
