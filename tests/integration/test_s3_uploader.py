"""The S3 uploader against a real moto server over HTTP on 127.0.0.1.

Where moto cannot produce a case AWS can (ACLs refused on "bucket owner enforced" buckets, a
part failing with 503, the Expiration / RequestCharged headers), botocore's ``before-send``
hook answers for the server with the response AWS documents; everything else is moto's own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from tests.faultproxy import FaultProxy, Rule
from tests.helpers import free_port
from vod2s3.contract import RESULT_KEYS
from vod2s3.headers import decode_value
from vod2s3.s3 import (
    AttemptFailure,
    MultipartProgress,
    ObjectSpec,
    S3Target,
    SentPart,
    UploadOutcome,
    UploadTuning,
    make_client,
    upload,
)
from vod2s3.s3.body import PartBody
from vod2s3.s3.checksum import checksum
from vod2s3.s3.client import HASHLIB_SIGNER, UNSENT_BYTES

MIB = 1024 * 1024
# multipart_threshold = 1 makes even a tiny file a (one-part) multipart upload: cheap coverage
# of the multipart path where the data size does not matter.
TINY_MULTIPART = UploadTuning(multipart_threshold=1, part_size=5 * MIB)
MULTIPART = UploadTuning(multipart_threshold=5 * MIB, part_size=5 * MIB, parts_in_flight=4)
KEY = "shows/My Show/épisode 1.mp4"


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def target(s3_endpoint: str) -> S3Target:
    return S3Target("testing", "testing", "us-east-1", s3_endpoint)


@pytest.fixture
def client(target: S3Target) -> Any:
    return make_client(target)


def spec(bucket: str, key: str = KEY, **options: Any) -> ObjectSpec:
    fields: dict[str, Any] = {"acl": "private", "metadata": {}, "content_type": "video/mp4"}
    fields.update(options)
    return ObjectSpec(bucket=bucket, key=key, **fields)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.mp4"
    path.write_bytes(data)
    return path


def send(
    client: Any,
    target: S3Target,
    path: Path,
    object_spec: ObjectSpec,
    tuning: UploadTuning = UploadTuning(),  # noqa: B008 - frozen, so a shared default is safe
    size: int | None = None,
    **callbacks: Any,
) -> UploadOutcome:
    fd = os.open(path, os.O_RDONLY)
    try:
        real_size = os.fstat(fd).st_size
        return upload(
            client,
            target,
            fd,
            real_size if size is None else size,
            object_spec,
            tuning,
            **callbacks,
        )
    finally:
        os.close(fd)


def crc32c(data: bytes) -> str:
    return checksum(data)  # checked against a reference implementation in test_s3_helpers


def open_uploads(s3_client: Any, bucket: str) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


def canned(
    request: AWSPreparedRequest, status: int, body: bytes = b"", **headers: str
) -> AWSResponse:
    """The response a real S3 would give, for cases moto cannot produce."""
    return AWSResponse(request.url, status, headers, _Body(body))


def s3_error(request: AWSPreparedRequest, status: int, code: str, message: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return canned(request, status, body, **{"Content-Type": "application/xml"})


def emulate_acls_disabled(client: Any) -> None:
    """What AWS does on a bucket with Object Ownership "bucket owner enforced"; moto stores the
    setting but still accepts ACL headers, so the refusal is produced here."""

    def refuse_acl(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        if "x-amz-acl" not in request.headers:
            return None
        return s3_error(
            request,
            400,
            "AccessControlListNotSupported",
            "The bucket does not allow ACLs",
        )

    client.meta.events.register("before-send.s3.PutObject", refuse_acl)
    client.meta.events.register("before-send.s3.CreateMultipartUpload", refuse_acl)


def part_number(request: AWSPreparedRequest) -> int:
    return int(parse_qs(urlsplit(request.url).query)["partNumber"][0])


# --- PutObject ------------------------------------------------------------------------------


def test_small_file_goes_up_in_one_put_with_its_options(
    client: Any, target: S3Target, s3_client: Any, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    metadata = {"title": "Café à 東京, épisode 1", "show": "plain ascii", "looks-encoded": "=?x?="}
    confirmed: list[int] = []
    operations: list[str] = []
    client.meta.events.register(
        "before-send.s3", lambda request, **kw: operations.append(kw["event_name"].split(".")[-1])
    )

    outcome = send(
        client,
        target,
        write(tmp_path, data),
        spec(bucket, metadata=metadata, cache_control="max-age=3600"),
        progress=confirmed.append,
    )

    assert operations == ["PutObject"]
    stored = s3_client.get_object(Bucket=bucket, Key=KEY)
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "video/mp4"
    assert stored["CacheControl"] == "max-age=3600"
    assert {k: decode_value(v) for k, v in stored["Metadata"].items()} == metadata
    assert stored["Metadata"]["title"].startswith("=?UTF-8?B?")
    assert stored["Metadata"]["show"] == "plain ascii"
    assert list(outcome.results) == list(RESULT_KEYS)
    assert outcome.results["ETag"] == stored["ETag"]
    assert outcome.results["ETag"].startswith('"')
    assert outcome.results["Bucket"] == bucket
    assert outcome.results["Key"] == KEY
    url = f"{s3_endpoint}/{bucket}/shows/My%20Show/%C3%A9pisode%201.mp4"
    assert outcome.results["Location"] == outcome.results["ObjectURL"] == url
    assert outcome.results["VersionId"] == ""
    assert outcome.results["ServerSideEncryption"] == ""
    assert outcome.s3_status == 200
    assert outcome.checksum == f"CRC32C:{crc32c(data)}"
    head = s3_client.head_object(Bucket=bucket, Key=KEY, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == crc32c(data)
    assert confirmed == [len(data)]


def test_empty_file_is_uploaded(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    outcome = send(client, target, write(tmp_path, b""), spec(bucket), TINY_MULTIPART)

    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == b""
    assert outcome.checksum == f"CRC32C:{crc32c(b'')}"


def test_expiration_and_request_charged_are_reported(
    client: Any, target: S3Target, bucket: str, tmp_path: Path
) -> None:
    # moto never sends these two headers; this is the PutObject answer AWS documents.
    expiration = 'expiry-date="Fri, 23 Dec 2033 00:00:00 GMT", rule-id="old-videos"'

    def answer(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        return canned(
            request,
            200,
            ETag='"abc"',
            **{"x-amz-expiration": expiration, "x-amz-request-charged": "requester"},
        )

    client.meta.events.register("before-send.s3.PutObject", answer)

    outcome = send(client, target, write(tmp_path, b"x"), spec(bucket, request_payer="requester"))

    assert outcome.results["Expiration"] == expiration
    assert outcome.results["RequestCharged"] == "requester"
    assert outcome.results["ETag"] == '"abc"'


# --- multipart ------------------------------------------------------------------------------


def test_large_file_goes_up_in_parallel_parts(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(17 * MIB + 12345)
    on_the_wire = PartsOnTheWire(client, hold=0.2)  # long enough for the others to start
    confirmed: list[int] = []

    outcome = send(
        client,
        target,
        write(tmp_path, data),
        spec(bucket, metadata={"title": "Ünïcödé"}),
        MULTIPART,
        progress=confirmed.append,
    )

    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data
    assert outcome.results["ETag"].endswith('-4"')
    assert outcome.results["ETag"] == s3_client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    assert list(outcome.results) == list(RESULT_KEYS)
    assert outcome.s3_status == 200
    assert sorted(confirmed) == [12345 + 2 * MIB, 5 * MIB, 5 * MIB, 5 * MIB]
    assert sum(confirmed) == len(data)
    assert 1 < on_the_wire.most <= MULTIPART.parts_in_flight
    part_crcs = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    raw = b"".join(base64.b64decode(crc32c(part)) for part in part_crcs)
    assert outcome.checksum == f"CRC32C:{crc32c(raw)}-4"
    head = s3_client.head_object(Bucket=bucket, Key=KEY, ChecksumMode="ENABLED")
    assert outcome.checksum.startswith(f"CRC32C:{head['ChecksumCRC32C']}")
    metadata = s3_client.head_object(Bucket=bucket, Key=KEY)["Metadata"]
    assert decode_value(metadata["title"]) == "Ünïcödé"
    assert open_uploads(s3_client, bucket) == []


def test_parts_in_flight_bounds_concurrent_parts(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    on_the_wire = PartsOnTheWire(client, hold=0.05)
    tuning = UploadTuning(multipart_threshold=5 * MIB, part_size=5 * MIB, parts_in_flight=1)

    send(client, target, write(tmp_path, os.urandom(11 * MIB)), spec(bucket), tuning)

    assert on_the_wire.most == 1


# --- ACLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_public_read_is_readable_anonymously(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path, tuning: UploadTuning
) -> None:
    outcome = send(
        client, target, write(tmp_path, b"public video"), spec(bucket, acl="public-read"), tuning
    )

    grants = s3_client.get_object_acl(Bucket=bucket, Key=KEY)["Grants"]
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"
    assert {"Grantee": {"Type": "Group", "URI": all_users}, "Permission": "READ"} in grants
    anonymous = httpx.get(outcome.results["ObjectURL"], timeout=10)
    assert anonymous.status_code == 200
    assert anonymous.content == b"public video"


def test_private_is_not_readable_anonymously(
    client: Any, target: S3Target, bucket: str, tmp_path: Path
) -> None:
    outcome = send(client, target, write(tmp_path, b"secret video"), spec(bucket))

    assert httpx.get(outcome.results["ObjectURL"], timeout=10).status_code == 403


@pytest.fixture
def owner_enforced_bucket(s3_client: Any) -> str:
    s3_client.create_bucket(Bucket="no-acls")
    s3_client.put_bucket_ownership_controls(
        Bucket="no-acls",
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    )
    return "no-acls"


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_private_works_on_a_bucket_without_acls(
    client: Any,
    target: S3Target,
    s3_client: Any,
    owner_enforced_bucket: str,
    tmp_path: Path,
    tuning: UploadTuning,
) -> None:
    emulate_acls_disabled(client)

    send(client, target, write(tmp_path, b"video"), spec(owner_enforced_bucket), tuning)

    stored = s3_client.get_object(Bucket=owner_enforced_bucket, Key=KEY)
    assert stored["Body"].read() == b"video"


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_public_read_on_a_bucket_without_acls_fails_with_advice(
    client: Any,
    target: S3Target,
    s3_client: Any,
    owner_enforced_bucket: str,
    tmp_path: Path,
    tuning: UploadTuning,
) -> None:
    emulate_acls_disabled(client)
    object_spec = spec(owner_enforced_bucket, acl="public-read")

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"video"), object_spec, tuning)

    assert failure.value.retryable is False
    assert failure.value.code == "AccessControlListNotSupported"
    assert failure.value.s3_status == 400
    assert failure.value.message == (
        "Bucket 'no-acls' has ACLs disabled (Object Ownership: Bucket owner enforced), so acl "
        "'public-read' cannot be applied. Upload with acl 'private' and grant read access with a "
        "bucket policy, or set the bucket's Object Ownership to 'Bucket owner preferred'"
    )
    assert open_uploads(s3_client, owner_enforced_bucket) == []


# --- versioning and encryption --------------------------------------------------------------


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_versioned_bucket_reports_the_version(
    client: Any, target: S3Target, s3_client: Any, tmp_path: Path, tuning: UploadTuning
) -> None:
    s3_client.create_bucket(Bucket="versioned")
    s3_client.put_bucket_versioning(
        Bucket="versioned", VersioningConfiguration={"Status": "Enabled"}
    )

    outcome = send(client, target, write(tmp_path, b"v1"), spec("versioned"), tuning)

    head = s3_client.head_object(Bucket="versioned", Key=KEY)
    assert outcome.results["VersionId"] not in ("", "null")
    assert outcome.results["VersionId"] == head["VersionId"]


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
@pytest.mark.parametrize(
    ("sse", "key_id"),
    [("AES256", ""), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/video-key")],
)
def test_server_side_encryption_is_reported(
    client: Any,
    target: S3Target,
    bucket: str,
    tmp_path: Path,
    tuning: UploadTuning,
    sse: str,
    key_id: str,
) -> None:
    object_spec = spec(bucket, server_side_encryption=sse, sse_kms_key_id=key_id)

    outcome = send(client, target, write(tmp_path, b"video"), object_spec, tuning)

    assert outcome.results["ServerSideEncryption"] == sse
    assert outcome.results["SSEKMSKeyId"] == key_id


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_missing_bucket_is_a_permanent_404(
    client: Any, target: S3Target, tmp_path: Path, tuning: UploadTuning
) -> None:
    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"video"), spec("nope-bucket"), tuning)

    assert failure.value.retryable is False
    assert failure.value.code == "NoSuchBucket"
    assert failure.value.s3_status == 404
    assert failure.value.message.startswith("Bucket 'nope-bucket' does not exist (NoSuchBucket")


class PartsOnTheWire:
    """Counts the UploadPart requests a client has on the wire at once."""

    def __init__(self, client: Any, hold: float) -> None:
        self.most = 0
        self._now = 0
        self._hold = hold
        self._lock = threading.Lock()
        client.meta.events.register("before-send.s3.UploadPart", self._starts)
        client.meta.events.register("after-call.s3.UploadPart", self._ends)

    def _starts(self, request: AWSPreparedRequest, **kwargs: Any) -> None:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        time.sleep(self._hold)

    def _ends(self, **kwargs: Any) -> None:
        with self._lock:
            self._now -= 1


class RecordingJournal:
    """Keeps what the worker's journal would write to the database."""

    def __init__(self) -> None:
        self.upload_id = ""
        self.part_size = 0
        self.mtime_ns = 0
        self.parts: dict[int, SentPart] = {}
        self.held = True  # False: the lease is gone, as the worker's journal would say
        self.fences = 0

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> bool:
        if not self.held:
            return False
        self.upload_id, self.part_size, self.mtime_ns = upload_id, part_size, source_mtime_ns
        self.parts = {}
        return True

    def resumed(self, kept: Sequence[SentPart]) -> bool:
        if not self.held:
            return False
        self.parts = {part.number: part for part in kept}
        return True

    def part_sent(self, part: SentPart) -> bool:
        if not self.held:
            return False
        self.parts[part.number] = part
        return True

    def fence(self) -> bool:
        self.fences += 1
        return self.held

    def progress(self) -> MultipartProgress:
        parts = tuple(sorted(self.parts.values(), key=lambda p: p.number))
        return MultipartProgress(self.upload_id, self.part_size, self.mtime_ns, parts)


def count_parts(client: Any) -> list[int]:
    """The part numbers the client sends from now on, in order."""
    numbers: list[int] = []

    def record(request: AWSPreparedRequest, **kwargs: Any) -> None:
        numbers.append(part_number(request))

    client.meta.events.register("before-send.s3.UploadPart", record)
    return numbers


def test_transient_part_failure_leaves_the_upload_to_resume(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * MIB)
    path = write(tmp_path, data)
    journal = RecordingJournal()
    failed: list[int] = []

    def slow_down_part_two(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        if part_number(request) != 2 or failed:
            return None
        failed.append(2)
        return s3_error(request, 503, "SlowDown", "Please reduce your request rate.")

    client.meta.events.register("before-send.s3.UploadPart", slow_down_part_two)
    with pytest.raises(AttemptFailure) as failure:
        send(client, target, path, spec(bucket), MULTIPART, journal=journal)

    assert failure.value.retryable is True
    assert failure.value.code == "SlowDown"
    assert failure.value.s3_status == 503
    [still_open] = open_uploads(s3_client, bucket)
    assert still_open["UploadId"] == journal.upload_id
    assert 2 not in journal.parts

    resent = count_parts(client)
    outcome = send(client, target, path, spec(bucket), MULTIPART, resume=journal.progress())

    assert sorted(resent) == [n for n in (1, 2, 3) if n not in journal.parts]
    assert outcome.results["ETag"].endswith('-3"')
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data
    assert open_uploads(s3_client, bucket) == []


def test_resume_sends_only_parts_s3_does_not_hold(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(26 * MIB)  # 6 parts of 5 MiB
    path = write(tmp_path, data)
    journal = RecordingJournal()
    tuning = UploadTuning(multipart_threshold=5 * MIB, part_size=5 * MIB, parts_in_flight=1)

    with pytest.raises(AttemptFailure):
        send(
            client,
            target,
            path,
            spec(bucket),
            tuning,
            journal=journal,
            should_stop=lambda: len(journal.parts) >= 3,
        )
    assert sorted(journal.parts) == [1, 2, 3]
    # The journal also names a part S3 does not have (its record outlived the part):
    # it must be sent again rather than trusted.
    forged = SentPart(4, '"0123456789abcdef0123456789abcdef"', "AAAAAA==", 5 * MIB)
    journal.parts[4] = forged

    resent = count_parts(client)
    progress: list[int] = []
    outcome = send(
        client,
        target,
        path,
        spec(bucket),
        tuning,
        resume=journal.progress(),
        progress=progress.append,
    )

    assert sorted(resent) == [4, 5, 6]
    assert progress[0] == 3 * 5 * MIB  # the parts kept count as already confirmed
    assert sum(progress) == len(data)
    assert outcome.results["ETag"].endswith('-6"')
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


def test_resume_of_a_changed_source_starts_over(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    path = write(tmp_path, os.urandom(12 * MIB))
    journal = RecordingJournal()
    with pytest.raises(AttemptFailure):
        send(
            client,
            target,
            path,
            spec(bucket),
            MULTIPART,
            journal=journal,
            should_stop=lambda: bool(journal.parts),
        )
    old_upload = journal.upload_id
    new_data = os.urandom(12 * MIB)
    path.write_bytes(new_data)
    os.utime(path, ns=(journal.mtime_ns + 10**9, journal.mtime_ns + 10**9))

    resent = count_parts(client)
    send(client, target, path, spec(bucket), MULTIPART, journal=journal, resume=journal.progress())

    assert journal.upload_id != old_upload
    assert sorted(resent) == [1, 2, 3]
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == new_data
    assert open_uploads(s3_client, bucket) == []


def test_resume_of_an_upload_s3_no_longer_has_starts_over(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * MIB)
    path = write(tmp_path, data)
    journal = RecordingJournal()
    with pytest.raises(AttemptFailure):
        send(
            client,
            target,
            path,
            spec(bucket),
            MULTIPART,
            journal=journal,
            should_stop=lambda: bool(journal.parts),
        )
    # A lifecycle rule (or an operator) aborted it meanwhile.
    s3_client.abort_multipart_upload(Bucket=bucket, Key=KEY, UploadId=journal.upload_id)
    stale = journal.progress()

    resent = count_parts(client)
    send(client, target, path, spec(bucket), MULTIPART, journal=journal, resume=stale)

    assert journal.upload_id != stale.upload_id
    assert sorted(resent) == [1, 2, 3]
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


def test_permanent_part_failure_aborts_the_multipart_upload(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    def deny_part_two(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        if part_number(request) != 2:
            return None
        return s3_error(request, 403, "AccessDenied", "Access Denied")

    client.meta.events.register("before-send.s3.UploadPart", deny_part_two)

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, os.urandom(12 * MIB)), spec(bucket), MULTIPART)

    assert failure.value.retryable is False
    assert failure.value.code == "AccessDenied"
    assert open_uploads(s3_client, bucket) == []


def test_a_permanent_failure_after_the_lease_is_gone_aborts_nothing(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """A worker that lost its lease (stalled past it) and then meets a permanent error must
    not abort the multipart upload: it may be the new owner's by now."""
    journal = RecordingJournal()

    def lose_the_lease_then_deny(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        journal.held = False
        return s3_error(request, 403, "AccessDenied", "Access Denied")

    client.meta.events.register("before-send.s3.UploadPart", lose_the_lease_then_deny)
    with pytest.raises(AttemptFailure) as failure:
        send(
            client,
            target,
            write(tmp_path, os.urandom(12 * MIB)),
            spec(bucket),
            MULTIPART,
            journal=journal,
        )

    assert failure.value.code == "AccessDenied"
    assert journal.fences >= 1  # asked before the abort, and told no
    assert [u["UploadId"] for u in open_uploads(s3_client, bucket)] == [journal.upload_id]


def test_a_lease_lost_before_completion_completes_nothing(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    journal = RecordingJournal()
    tuning = UploadTuning(multipart_threshold=5 * MIB, part_size=5 * MIB, parts_in_flight=1)
    completes: list[int] = []
    parts_sent: list[int] = []

    def lose_after_the_last_part(**kwargs: Any) -> None:
        parts_sent.append(1)
        if len(parts_sent) == 2:
            journal.held = False

    client.meta.events.register("after-call.s3.UploadPart", lose_after_the_last_part)
    client.meta.events.register(
        "before-send.s3.CompleteMultipartUpload", lambda **kwargs: completes.append(1)
    )
    with pytest.raises(AttemptFailure) as failure:
        send(
            client,
            target,
            write(tmp_path, os.urandom(10 * MIB)),
            spec(bucket),
            tuning,
            journal=journal,
        )

    assert failure.value.code == "Stopped"
    assert completes == []
    assert len(open_uploads(s3_client, bucket)) == 1  # left as it was, for its holder
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_stopping_leaves_the_upload_to_resume(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    confirmed: list[int] = []
    journal = RecordingJournal()
    tuning = UploadTuning(multipart_threshold=5 * MIB, part_size=5 * MIB, parts_in_flight=1)

    with pytest.raises(AttemptFailure) as failure:
        send(
            client,
            target,
            write(tmp_path, os.urandom(16 * MIB)),
            spec(bucket),
            tuning,
            progress=confirmed.append,
            should_stop=lambda: bool(confirmed),
            journal=journal,
        )

    assert failure.value.code == "Stopped"
    assert failure.value.retryable is True
    assert confirmed == [5 * MIB]
    assert [u["UploadId"] for u in open_uploads(s3_client, bucket)] == [journal.upload_id]
    assert sorted(journal.parts) == [1]
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_source_truncated_mid_upload_starts_over(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    path = write(tmp_path, os.urandom(16 * MIB))

    def truncate_after_first_part(n: int) -> None:
        os.truncate(path, 6 * MIB)

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, path, spec(bucket), MULTIPART, progress=truncate_after_first_part)

    assert failure.value.code == "SourceChanged"
    assert failure.value.retryable is True
    assert failure.value.s3_status == 0
    assert failure.value.message == (
        "The source file changed while it was being uploaded; the upload will start over"
    )
    assert open_uploads(s3_client, bucket) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_size_other_than_the_files_is_a_source_change(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"grown"), spec(bucket), size=3)

    assert failure.value.code == "SourceChanged"
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_callback_errors_come_back_unchanged_and_leave_the_upload(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """The caller's own failure (its database is down, its lease is lost) is not the
    upload's: the multipart upload stays for whoever resumes it."""

    class DatabaseDown(Exception):
        pass

    def progress(n: int) -> None:
        raise DatabaseDown

    with pytest.raises(DatabaseDown):
        send(
            client,
            target,
            write(tmp_path, b"video"),
            spec(bucket),
            TINY_MULTIPART,
            progress=progress,
        )

    assert len(open_uploads(s3_client, bucket)) == 1


def test_unreachable_endpoint_is_a_retryable_connection_error(tmp_path: Path) -> None:
    target = S3Target("testing", "testing", "us-east-1", f"http://127.0.0.1:{free_port()}")

    with pytest.raises(AttemptFailure) as failure:
        send(make_client(target, connect_timeout=2), target, write(tmp_path, b"v"), spec("videos"))

    assert failure.value.retryable is True
    assert failure.value.code == "ConnectionError"
    assert failure.value.s3_status == 0


def test_silent_endpoint_is_a_retryable_timeout(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    # Accept the connection and never answer.
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    target = S3Target("testing", "testing", "us-east-1", f"http://127.0.0.1:{port}")
    try:
        client = make_client(target, read_timeout=0.5)
        with pytest.raises(AttemptFailure) as failure:
            send(client, target, write(tmp_path, b"v"), spec("videos"))
    finally:
        for connection in accepted:
            connection.close()
        listener.close()

    assert failure.value.retryable is True
    assert failure.value.code == "Timeout"
    assert failure.value.s3_status == 0


# --- credentials (moto checks them only with auth turned on) ---------------------------------


@pytest.fixture
def iam_keys(s3_endpoint: str, bucket: str) -> Iterator[dict[str, tuple[str, str]]]:
    """Keys of a user who may write and one who may only read; moto enforces them meanwhile."""
    iam = boto3.client(
        "iam",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )
    keys = {}
    for user, actions in {"writer": ["s3:*"], "reader": ["s3:GetObject", "s3:ListBucket"]}.items():
        iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()
    try:
        yield keys
    finally:
        # Always: every later test expects moto to accept any credentials again.
        httpx.post(
            f"{s3_endpoint}/moto-api/reset-auth", content=b"inf", timeout=10
        ).raise_for_status()


def as_user(s3_endpoint: str, key_id: str, secret: str) -> tuple[Any, S3Target]:
    target = S3Target(key_id, secret, "us-east-1", s3_endpoint)
    return make_client(target), target


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_allowed_user_can_upload(
    iam_keys: dict[str, tuple[str, str]],
    s3_endpoint: str,
    bucket: str,
    tmp_path: Path,
    tuning: UploadTuning,
) -> None:
    """moto checks the signatures here: over plain http the bodies are signed, by botocore's
    own signer (see the next test), and must verify."""
    client, target = as_user(s3_endpoint, *iam_keys["writer"])

    outcome = send(client, target, write(tmp_path, b"video"), spec(bucket), tuning)

    assert outcome.s3_status == 200


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_user_without_put_permission_gets_access_denied(
    iam_keys: dict[str, tuple[str, str]],
    s3_endpoint: str,
    bucket: str,
    tmp_path: Path,
    tuning: UploadTuning,
) -> None:
    client, target = as_user(s3_endpoint, *iam_keys["reader"])

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"video"), spec(bucket), tuning)

    assert failure.value.retryable is False
    assert failure.value.code == "AccessDenied"
    assert failure.value.s3_status == 403
    assert failure.value.message.startswith(
        "S3 refused access to bucket 'videos' (AccessDenied: Access Denied). Check that the "
        "account's AWS credentials may s3:PutObject on this bucket"
    )


def test_unknown_access_key_is_permanent(
    iam_keys: dict[str, tuple[str, str]], s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    client, target = as_user(s3_endpoint, "AKIAUNKNOWNKEY000000", "whatever-secret")

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"video"), spec(bucket))

    assert failure.value.retryable is False
    assert failure.value.code == "InvalidAccessKeyId"
    assert failure.value.s3_status == 403


def test_wrong_secret_is_permanent_and_never_echoed(
    iam_keys: dict[str, tuple[str, str]], s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    wrong_secret = "wRoNgSeCrEt+0123456789abcdefghijklmnopqr"
    client, target = as_user(s3_endpoint, iam_keys["writer"][0], wrong_secret)

    with pytest.raises(AttemptFailure) as failure:
        send(client, target, write(tmp_path, b"video"), spec(bucket))

    assert failure.value.retryable is False
    assert failure.value.code == "SignatureDoesNotMatch"
    assert failure.value.s3_status == 403
    assert wrong_secret not in failure.value.message
    assert wrong_secret not in repr(failure.value)
    assert wrong_secret not in repr(target)


# --- the client -----------------------------------------------------------------------------


def test_client_leaves_retries_to_the_service(target: S3Target) -> None:
    config = make_client(target).meta.config

    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.signature_version == "s3v4"
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": True}


@pytest.mark.parametrize(
    ("endpoint", "addressing"),
    [("", "auto"), ("https://s3.example.test", "path")],
)
def test_client_skips_payload_signing_over_tls(endpoint: str, addressing: str) -> None:
    config = make_client(S3Target("k", "s", "eu-west-1", endpoint)).meta.config

    assert config.s3 == {"addressing_style": addressing, "payload_signing_enabled": False}
    assert config.region_name == "eu-west-1"


@pytest.mark.parametrize(("mode", "signed"), [("auto", True), ("on", True), ("off", False)])
def test_payload_signing_setting_over_plain_http(
    target: S3Target, s3_client: Any, bucket: str, tmp_path: Path, mode: str, signed: bool
) -> None:
    client = make_client(target, payload_signing=mode)
    seen: list[str] = []

    def record(request: AWSPreparedRequest, **kwargs: Any) -> None:
        seen.append(
            request.headers["X-Amz-Content-SHA256"].decode()
            if isinstance(request.headers["X-Amz-Content-SHA256"], bytes)
            else request.headers["X-Amz-Content-SHA256"]
        )

    client.meta.events.register("before-send.s3.PutObject", record)
    data = b"signed or not"
    send(client, target, write(tmp_path, data), spec(bucket))

    assert seen == [hashlib.sha256(data).hexdigest() if signed else "UNSIGNED-PAYLOAD"]
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


@pytest.mark.parametrize("tuning", [UploadTuning(), TINY_MULTIPART], ids=["put", "multipart"])
def test_bodies_go_out_in_large_writes_without_waiting_for_100_continue(
    target: S3Target, s3_client: Any, bucket: str, tmp_path: Path, tuning: UploadTuning
) -> None:
    """botocore would turn the bytes into a BytesIO that urllib3 sends 16 KiB at a time,
    after an ``Expect: 100-continue`` round trip; the uploader hands over a PartBody."""
    client = make_client(target)
    bodies: list[tuple[str, type, str | None]] = []

    def record(request: AWSPreparedRequest, event_name: str, **kwargs: Any) -> None:
        bodies.append(
            (event_name.rsplit(".", 1)[-1], type(request.body), request.headers.get("Expect"))
        )

    client.meta.events.register("before-send.s3.PutObject", record)
    client.meta.events.register("before-send.s3.UploadPart", record)
    data = os.urandom(64 * 1024)
    send(client, target, write(tmp_path, data), spec(bucket), tuning)

    operation = "PutObject" if tuning.multipart_threshold > len(data) else "UploadPart"
    assert bodies == [(operation, PartBody, None)]
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


class SlowEndpoint:
    """An HTTP endpoint on loopback that takes request bodies at ``rate`` bytes a second
    (through a small receive buffer) and answers 200 with an ETag."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.expect_headers = 0
        self.received: list[int] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        stream = connection.makefile("rb")
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() == "expect":
                self.expect_headers += 1
                connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        got = 0
        while got < length:
            chunk = stream.read1(min(64 * 1024, length - got))
            if not chunk:
                return
            got += len(chunk)
            time.sleep(len(chunk) / self.rate)
        self.received.append(got)
        connection.sendall(
            b'HTTP/1.1 200 OK\r\nETag: "slow"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
        )

    def close(self) -> None:
        self._listener.close()


def test_a_slow_link_that_keeps_taking_bytes_is_not_timed_out(tmp_path: Path) -> None:
    """urllib3 sends a body under the connect timeout, and Python bounds a whole sendall by
    it: a 12 MiB body in one write would have to arrive within that timeout. Each write of
    a PartBody has the timeout to itself, as botocore's 16 KiB writes had. Nor is it
    abandoned as stalled: it keeps taking bytes."""
    slow = SlowEndpoint(rate=6 * MIB)  # 12 MiB takes about 2 s; the timeout is 1 s
    target = S3Target("testing", "testing", "us-east-1", slow.url)
    try:
        client = make_client(
            target, connect_timeout=1, read_timeout=10, payload_signing="off", stall_seconds=0.5
        )
        outcome = send(client, target, write(tmp_path, os.urandom(12 * MIB)), spec("videos"))
    finally:
        slow.close()

    assert outcome.s3_status == 200
    assert slow.received == [12 * MIB]
    assert slow.expect_headers == 0


def test_the_clients_connections_carry_the_stall_timeout_and_a_short_send_queue(
    s3_endpoint: str,
) -> None:
    """Both options are on the sockets that the client's own pool opens: what the kernel
    enforces, not a list of settings."""
    target = S3Target("testing", "testing", "us-east-1", s3_endpoint, addressing_style="path")
    client = make_client(
        target, connect_timeout=5, read_timeout=5, payload_signing="off", stall_seconds=7
    )
    client.list_buckets()  # the pool exists, and a request went through it
    pools = client._endpoint.http_session._manager
    connection = pools.connection_from_url(s3_endpoint)._get_conn()
    connection.connect()
    try:
        opened = connection.sock
        assert opened.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
        assert opened.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == UNSENT_BYTES
    finally:
        connection.close()


def test_a_connection_the_store_stops_reading_from_is_abandoned(
    s3_endpoint: str, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """The proxy reads a PutObject's headers and none of its body: the connection's window
    stays shut. It is given up once no byte has moved for stall_seconds (1 s here), long
    before the 60 s timeouts, and the next request, on a fresh connection, goes through."""
    data = os.urandom(24 * MIB)  # more than the loopback socket buffers hold
    path = write(tmp_path, data)
    single_put = UploadTuning(multipart_threshold=64 * MIB)
    outcomes: list[UploadOutcome | AttemptFailure] = []
    with FaultProxy(s3_endpoint) as proxy:
        proxy.add_rule(Rule(operation="PutObject", action="stall"))
        target = S3Target("testing", "testing", "us-east-1", proxy.url, addressing_style="path")
        client = make_client(
            target, connect_timeout=60, read_timeout=60, payload_signing="off", stall_seconds=1
        )

        def attempts() -> None:
            for _ in range(2):
                try:
                    outcomes.append(send(client, target, path, spec(bucket), single_put))
                except AttemptFailure as failure:
                    outcomes.append(failure)

        sender = threading.Thread(target=attempts, daemon=True)
        sender.start()
        sender.join(timeout=30)  # a hang until the 60 s timeouts fails here instead

        assert not sender.is_alive()
        first, second = outcomes
        assert isinstance(first, AttemptFailure)
        assert first.retryable
        assert isinstance(second, UploadOutcome)
        assert [seen.status for seen in proxy.seen] == [0, 200]
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


@pytest.mark.parametrize(
    ("endpoint", "mode", "signer"),
    [
        ("http://127.0.0.1:9", "auto", HASHLIB_SIGNER),
        ("http://127.0.0.1:9", "on", HASHLIB_SIGNER),
        ("http://127.0.0.1:9", "off", None),
        ("", "auto", None),
    ],
)
def test_signed_bodies_are_hashed_by_botocores_own_signer(
    endpoint: str, mode: str, signer: str | None
) -> None:
    """awscrt's signer would read a signed body back through a Python stream in small
    blocks; botocore's own hashes it in 1 MiB hashlib updates. Bodiless operations keep
    awscrt's."""
    client = make_client(S3Target("k", "s", "us-east-1", endpoint), payload_signing=mode)

    def chosen(operation: str) -> str | None:
        _handler, response = client.meta.events.emit_until_response(
            f"choose-signer.s3.{operation}",
            signing_name="s3",
            region_name="us-east-1",
            signature_version="s3v4",
            context={},
        )
        return response

    assert chosen("PutObject") == signer
    assert chosen("UploadPart") == signer
    assert chosen("CompleteMultipartUpload") is None
    assert chosen("HeadObject") is None


def test_a_takeover_aborts_strays_an_unrecorded_attempt_left(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """A worker killed between CreateMultipartUpload and recording its id leaves an upload
    nobody can resume. The attempt that takes over aborts it before starting its own; an
    upload of another key is not touched."""
    stray = s3_client.create_multipart_upload(Bucket=bucket, Key=KEY)["UploadId"]
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="another.mp4")["UploadId"]
    data = os.urandom(12 * MIB)

    send(client, target, write(tmp_path, data), spec(bucket), MULTIPART, taken_over=True)

    left = {u["UploadId"] for u in open_uploads(s3_client, bucket)}
    assert stray not in left
    assert left == {other}
    assert s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data


def test_a_first_attempt_leaves_other_uploads_of_the_key_alone(
    client: Any, target: S3Target, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    existing = s3_client.create_multipart_upload(Bucket=bucket, Key=KEY)["UploadId"]

    send(client, target, write(tmp_path, os.urandom(12 * MIB)), spec(bucket), MULTIPART)

    assert {u["UploadId"] for u in open_uploads(s3_client, bucket)} == {existing}
