"""The whole loop over real HTTP: aws.upload → worker → S3 (moto) → aws.status."""

from __future__ import annotations

import os
from typing import Any

from tests.service import RunningService
from vod2s3.contract import RESULT_KEYS

ORIGINAL_FIELDS = (
    "id",
    "cdn_id",
    "path",
    "destination_path",
    "metadata",
    "acl",
    "callback",
    "message",
    "results",
    "created",
    "last_updated",
    "status",
)
ADDED_FIELDS = (
    "bucket",
    "state",
    "attempts",
    "bytes_total",
    "bytes_uploaded",
    "progress",
    "error_code",
    "callback_state",
    "callback_attempts",
    "started",
    "finished",
)
TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


def test_small_file_uploads_and_status_reports_it(
    service: RunningService, s3_client: Any, bucket: str
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    data = b"small video " * 1000
    path = service.write_source("sestore1/jb/path/to/file.mp4", data)

    queued = api.upload(path, bucket, "private", metadata={"title": "Holiday"})

    assert queued["message"] == "Queued"
    assert queued["state"] == "queued"
    assert queued["results"] == {}
    assert queued["status"] == 0
    assert queued["destination_path"] == "path/to/file.mp4"
    assert queued["bytes_total"] == len(data)
    assert service.drain() == 1

    record = api.get(queued["id"])
    assert record["message"] == "Successfully Uploaded to AWS"
    assert record["state"] == "completed"
    assert record["status"] == 200
    assert record["progress"] == 100
    assert set(record["results"]) == set(RESULT_KEYS)
    assert record["results"]["Bucket"] == bucket
    assert record["results"]["Key"] == "path/to/file.mp4"
    head = s3_client.head_object(Bucket=bucket, Key="path/to/file.mp4")
    assert record["results"]["ETag"] == head["ETag"]
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"title": "Holiday"}
    body = s3_client.get_object(Bucket=bucket, Key="path/to/file.mp4")["Body"].read()
    assert body == data


def test_record_has_every_original_field_in_original_format(
    service: RunningService, bucket: str
) -> None:
    import re

    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/a.mp4", b"x" * 10)
    upload_id = api.upload(path, bucket, "private", callback="www.mycallbackurl.com/")["id"]
    service.drain()

    record = api.get(upload_id)
    assert list(record)[: len(ORIGINAL_FIELDS)] == list(ORIGINAL_FIELDS)
    assert set(ADDED_FIELDS) <= set(record)
    assert isinstance(record["id"], int)
    assert isinstance(record["status"], int)
    assert record["cdn_id"] == 158
    assert record["metadata"] == {}
    assert record["callback"] == "www.mycallbackurl.com/"
    assert re.match(TIMESTAMP, record["created"])
    assert re.match(TIMESTAMP, record["last_updated"])
    assert re.match(TIMESTAMP, record["finished"])


def test_multipart_upload_of_large_file(
    service: RunningService, s3_client: Any, bucket: str
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    data = os.urandom(17 * 1024 * 1024)  # 5 MiB parts in the test settings: 4 parts
    path = service.write_source("sestore1/jb/big.mp4", data)

    upload_id = api.upload(path, bucket, "private", destination_path="/videos/big.mp4")["id"]
    service.drain()

    record = api.get(upload_id)
    assert record["state"] == "completed", record["message"]
    assert record["destination_path"] == "videos/big.mp4"
    assert record["results"]["ETag"].endswith('-4"')
    assert record["bytes_uploaded"] == len(data)
    body = s3_client.get_object(Bucket=bucket, Key="videos/big.mp4")["Body"].read()
    assert body == data
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_public_read_acl_is_applied(service: RunningService, s3_client: Any, bucket: str) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/public.mp4", b"public")
    upload_id = api.upload(path, bucket, "public-read")["id"]
    service.drain()

    assert api.get(upload_id)["state"] == "completed"
    grants = s3_client.get_object_acl(Bucket=bucket, Key="public.mp4")["Grants"]
    assert any(
        g["Grantee"].get("URI") == "http://acs.amazonaws.com/groups/global/AllUsers"
        and g["Permission"] == "READ"
        for g in grants
    )


def test_versioned_bucket_reports_version_id_and_sse(
    service: RunningService, s3_client: Any, bucket: str
) -> None:
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/v.mp4", b"versioned")
    upload_id = api.upload(path, bucket, "private", server_side_encryption="AES256")["id"]
    service.drain()

    results = api.get(upload_id)["results"]
    head = s3_client.head_object(Bucket=bucket, Key="v.mp4")
    assert results["VersionId"] == head["VersionId"] != ""
    assert results["ServerSideEncryption"] == "AES256"


def test_missing_bucket_fails_with_s3_code(service: RunningService) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/a.mp4", b"abc")
    upload_id = api.upload(path, "no-such-bucket", "private")["id"]
    service.drain()

    record = api.get(upload_id)
    assert record["state"] == "failed"
    assert record["error_code"] == "NoSuchBucket"
    assert record["status"] == 404
    assert "no-such-bucket" in record["message"]
    assert record["results"] == {}
    assert record["attempts"] == 1  # permanent: not retried


def test_source_deleted_after_queueing_fails_clearly(service: RunningService, bucket: str) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/gone.mp4", b"abc")
    upload_id = api.upload(path, bucket, "private")["id"]
    (service.storage_root / path).unlink()
    service.drain()

    record = api.get(upload_id)
    assert record["state"] == "failed"
    assert record["error_code"] == "SourceMissing"
    assert record["status"] == 0


def test_status_lists_newest_first_with_limit_offset_and_state(
    service: RunningService, bucket: str
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    ids = [
        api.upload(service.write_source(f"sestore1/jb/{n}.mp4", b"x"), bucket, "private")["id"]
        for n in range(5)
    ]
    assert [r["id"] for r in api.status()] == ids[::-1]
    assert [r["id"] for r in api.status(limit=2, offset=1)] == ids[3:1:-1]
    assert api.status(state="completed") == []
    assert len(api.status(state="queued")) == 5


def test_account_without_uploads_gets_empty_list(service: RunningService) -> None:
    issued = service.add_account(158, "jb")
    envelope = service.client(issued).call("aws.status")
    assert envelope["status"] == "success"
    assert envelope["message"] == "Found AWS Status"
    assert envelope["data"] == []
    assert isinstance(envelope["handle_time"], float)


def test_replayed_upload_request_queues_once(service: RunningService, bucket: str) -> None:
    import httpx

    from vod2s3.jsonenc import php_json_encode

    issued = service.add_account(158, "jb")
    api = service.client(issued)
    service.write_source("sestore1/jb/r.mp4", b"replay")
    signed = api.build_request("aws.upload", path="sestore1/jb/r.mp4", bucket=bucket, acl="private")
    body = {"json": php_json_encode(signed)}

    first = httpx.post(service.url, data=body).json()
    second = httpx.post(service.url, data=body).json()

    assert first["status"] == second["status"] == "success"
    assert first["data"]["id"] == second["data"]["id"]
    assert len(api.status()) == 1


def test_private_upload_works_on_bucket_with_acls_disabled(
    service: RunningService, s3_client: Any, bucket: str
) -> None:
    """A private upload sends no ACL at all, so buckets with Object Ownership 'bucket owner
    enforced' accept it. (moto stores that setting without enforcing it; the uploader's tests
    cover the public-read refusal with an AWS-shaped response.)"""
    s3_client.put_bucket_ownership_controls(
        Bucket=bucket,
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    )
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    path = service.write_source("sestore1/jb/o.mp4", b"owned")
    upload_id = api.upload(path, bucket, "private")["id"]
    service.drain()

    assert api.get(upload_id)["state"] == "completed"


def test_an_upload_queued_before_its_account_was_disabled_is_not_sent(
    service: RunningService, s3_client: Any, bucket: str
) -> None:
    """`accounts disable` stops the account's credentials from being used at all, including
    for the uploads it had already queued: they wait (tests/integration/test_account_states.py
    has them resume)."""
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    upload_id = api.upload(
        service.write_source("sestore1/jb/d.mp4", b"disabled"), bucket, "private"
    )["id"]
    service.runtime.accounts.set_disabled(158, True)
    service.drain()

    record = service.runtime.uploads.get(service.runtime.accounts.get(158).id, upload_id)
    assert record is not None
    assert (record.state, record.attempts) == ("queued", 0)
    assert "the account is disabled" in record.message
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
