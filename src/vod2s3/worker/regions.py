"""A bucket in another region than the account's is refused before the first byte, with
the region to set. Asked once per account's store, bucket and hour."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vod2s3.s3 import S3Target
from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.region import reported_region
from vod2s3.worker.findings import Findings

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client


class BucketRegions:
    def __init__(self) -> None:
        self._known: Findings[str | None] = Findings()

    def check(self, client: S3Client, target: S3Target, bucket: str, cdn: int) -> None:
        """Raise :class:`AttemptFailure` (not retryable) when the store reports the bucket
        in another region than the account's."""
        region = self._known.get(
            (target.endpoint_url, target.access_key_id, bucket),
            lambda: reported_region(client, bucket),
        )
        if region and region != target.region:
            raise AttemptFailure(
                retryable=False,
                s3_status=0,
                code="WrongRegion",
                message=(
                    f"Bucket '{bucket}' is in region {region}, but the account is set to "
                    f"{target.region}: the operator sets the region with `vod2s3 accounts "
                    f"set-aws --cdn {cdn} --region {region} ...`"
                ),
            )
