"""A bucket in another region than the account's is refused before the first byte, with the
region to set (issue 13, item 4); on a store that does not report regions, nothing is
refused on that account (tests/stores runs RGW, which reports none)."""

from __future__ import annotations

from typing import Any

from tests.service import RunningService


def test_a_bucket_in_another_region_fails_at_once_saying_which(
    service: RunningService, s3_client: Any
) -> None:
    s3_client.create_bucket(
        Bucket="videos-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    api = service.client(service.add_account(158, "jb"))  # its region: us-east-1
    upload_id = api.upload(
        service.write_source("sestore1/jb/a.mp4", b"video"), "videos-eu", "private"
    )["id"]

    service.drain()

    record = api.get(upload_id)
    assert (record["state"], record["error_code"], record["attempts"]) == (
        "failed",
        "WrongRegion",
        1,
    )
    assert "in region eu-west-1" in record["message"]
    assert "--region eu-west-1" in record["message"]
    assert "Contents" not in s3_client.list_objects_v2(Bucket="videos-eu")
