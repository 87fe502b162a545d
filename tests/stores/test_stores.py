"""The S3 scenarios against every store: moto, and Ceph's RADOS Gateway over http and over
https (issue 13, items 1, 3 and 6). Where the stores differ, each test says what vod2s3
must make of the difference."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.faultproxy import FaultProxy, Rule
from tests.service import (
    VOD2S3,
    RunningService,
    make_settings,
    running_service,
    wait_until,
    worker_env,
    worker_process,
)
from tests.stores.conftest import Store
from vod2s3.client import Vod2s3Client
from vod2s3.headers import encode_metadata
from vod2s3.s3.integrity import ALGORITHMS

MiB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture
def svc(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningService]:
    with serving(tmp_path, store, monkeypatch) as running:
        yield running


@contextmanager
def serving(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningService]:
    # The default check: "auto" probes each store for the cheapest it verifies.
    settings = make_settings(tmp_path, integrity="auto", retry_base_delay=0.0, retry_max_delay=0.0)
    with running_service(settings, store.endpoint) as running:
        yield running


def customer(
    svc: RunningService, store: Store, secret: str = "", endpoint: str = ""
) -> Vod2s3Client:
    issued = svc.runtime.accounts.create(158, "jb")
    svc.runtime.accounts.set_aws(
        158,
        store.access_key,
        secret or store.secret_key,
        "us-east-1",
        endpoint_url=endpoint or store.endpoint,
    )
    if store.ca_bundle:
        # The store's self-signed certificate, trusted for this account only.
        svc.runtime.accounts.set_endpoint_options(158, ca_bundle=store.ca_bundle)
    (svc.storage_root / "sestore1" / "jb").mkdir(parents=True, exist_ok=True)
    return svc.client(issued)


def finished(svc: RunningService, api: Vod2s3Client, upload_id: int) -> dict[str, Any]:
    svc.drain()
    return api.get(upload_id)


def test_put_and_multipart_keep_bytes_metadata_acls_and_a_true_etag(
    svc: RunningService, store: Store
) -> None:
    api = customer(svc, store)
    bucket = store.new_bucket()
    small = os.urandom(1000)
    large = os.urandom(12 * MiB)  # three 5 MiB parts
    svc.write_source("sestore1/jb/small.mp4", small)
    svc.write_source("sestore1/jb/large.mp4", large)
    meta = {"title": "Épisode ü", "show": "news/1"}
    one = api.upload("sestore1/jb/small.mp4", bucket, "private", metadata=meta)["id"]
    two = api.upload("sestore1/jb/large.mp4", bucket, "public-read")["id"]
    s3 = store.client()

    # What "auto" found: RGW verifies Content-MD5 (and signed payloads) but ignores CRC32C;
    # moto's server verifies none of the three, and the record says so.
    expected = (
        {"algorithm": "CRC32C", "verified_by": "nobody"}
        if store.name == "moto"
        else {"algorithm": "MD5", "verified_by": "store"}
    )
    for upload_id, key, data in ((one, "small.mp4", small), (two, "large.mp4", large)):
        record = finished(svc, api, upload_id)
        assert record["state"] == "completed", record
        head = s3.head_object(Bucket=bucket, Key=key)
        assert record["integrity"] == expected
        algorithm, _, value = record["checksum"].partition(":")
        assert algorithm == expected["algorithm"]
        if algorithm == "MD5":
            # Our MD5 (composite for multipart) is the store's own ETag, independently.
            digest, _, parts = value.partition("-")
            etag = base64.b64decode(digest).hex() + (f"-{parts}" if parts else "")
            assert f'"{etag}"' == head["ETag"]
        # RGW answers CompleteMultipartUpload with an empty ETag: the record has the real one.
        assert record["results"]["ETag"] == head["ETag"] != ""
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    # Non-ASCII values travel RFC 2047-encoded, as vod2s3 sends them to every store.
    assert s3.head_object(Bucket=bucket, Key="small.mp4")["Metadata"] == encode_metadata(meta)

    def public(key: str) -> bool:
        grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        return any(g["Grantee"].get("URI") == ALL_USERS for g in grants)

    assert (public("small.mp4"), public("large.mp4")) == (False, True)
    # The probes left nothing behind.
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == ["large.mp4", "small.mp4"]


def test_encryption_the_store_does_not_apply_is_never_recorded_as_done(
    svc: RunningService, store: Store
) -> None:
    api = customer(svc, store)
    bucket = store.new_bucket()
    svc.write_source("sestore1/jb/secret.mp4", b"private video")
    upload_id = api.upload(
        "sestore1/jb/secret.mp4", bucket, "private", server_side_encryption="AES256"
    )["id"]

    record = finished(svc, api, upload_id)

    if store.name == "moto":
        assert record["state"] == "completed", record
        assert record["results"]["ServerSideEncryption"] == "AES256"
        return
    assert record["state"] == "failed", record
    if store.name == "rgw-http":
        # RGW refuses SSE over plain http (rgw_crypt_require_ssl): the request fails.
        assert record["error_code"] == "InvalidRequest"
        assert "server_side_encryption=AES256" in record["message"]
    else:
        # Over https it stores the object unencrypted and says nothing.
        assert record["error_code"] == "EncryptionNotApplied"
        assert "the object was deleted again" in record["message"]
    with pytest.raises(ClientError) as missing:
        store.client().head_object(Bucket=bucket, Key="secret.mp4")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_a_storage_class_the_store_lacks_names_the_option_sent(
    svc: RunningService, store: Store
) -> None:
    api = customer(svc, store)
    bucket = store.new_bucket()
    svc.write_source("sestore1/jb/cold.mp4", b"archive")
    upload_id = api.upload("sestore1/jb/cold.mp4", bucket, "private", storage_class="STANDARD_IA")[
        "id"
    ]

    record = finished(svc, api, upload_id)

    if store.name == "moto":
        assert record["state"] == "completed", record
        head = store.client().head_object(Bucket=bucket, Key="cold.mp4")
        assert head["StorageClass"] == "STANDARD_IA"
        return
    # RGW refuses other classes with an empty <Message>: the message names what was sent.
    assert (record["state"], record["error_code"]) == ("failed", "InvalidArgument"), record
    assert "without saying why" in record["message"]
    assert "storage_class=STANDARD_IA" in record["message"]


def test_a_missing_bucket_and_a_wrong_secret_say_what_to_fix(
    svc: RunningService, store: Store
) -> None:
    api = customer(svc, store, secret="wrong" if store.name != "moto" else "")
    svc.write_source("sestore1/jb/a.mp4", b"v")
    upload_id = api.upload("sestore1/jb/a.mp4", "no-such-bucket-here", "private")["id"]

    record = finished(svc, api, upload_id)

    assert record["state"] == "failed", record
    if store.name == "moto":  # moto does not check signatures
        assert record["error_code"] == "NoSuchBucket"
        assert "no-such-bucket-here" in record["message"]
    else:
        assert record["error_code"] == "SignatureDoesNotMatch"
        assert "secret" in record["message"].lower()


@pytest.mark.parametrize("mode", ["md5", "sha256", "crc32c"])
def test_a_body_damaged_on_the_wire_is_refused_by_the_check_rgw_verifies(
    tmp_path: Path, rgw_http: Store, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A loopback proxy changes one byte of the first PutObject's body. RGW refuses it, and
    the worker sends it again: for Content-MD5, for a signed payload, and for CRC32C too,
    which RGW ignores, only because over plain http the payload is signed as well (the
    default, VOD2S3_PAYLOAD_SIGNING=auto). Over https CRC32C alone would let the damage
    through: the probe of "auto" finds that out and sends Content-MD5 instead."""
    store = rgw_http
    with serving(tmp_path, store, monkeypatch) as svc, FaultProxy(store.endpoint) as proxy:
        api = customer(svc, store, endpoint=proxy.url)
        svc.runtime.accounts.set_integrity(158, mode)
        bucket = store.new_bucket()
        data = os.urandom(4096)
        svc.write_source("sestore1/jb/wire.mp4", data)
        proxy.add_rule(Rule(operation="PutObject", action="corrupt", times=1))
        upload_id = api.upload("sestore1/jb/wire.mp4", bucket, "private")["id"]

        record = finished(svc, api, upload_id)

    assert record["state"] == "completed", record
    stored = store.client().get_object(Bucket=bucket, Key="wire.mp4")["Body"].read()
    assert record["integrity"] == {"algorithm": ALGORITHMS[mode], "verified_by": "unknown"}
    assert record["attempts"] == 2  # refused (BadDigest / SHA-256 mismatch), sent again
    assert stored == data


def check(svc: RunningService, *args: str) -> subprocess.CompletedProcess[str]:
    """`vod2s3 accounts check --cdn 158 --json`, against the service's database."""
    settings = svc.runtime.settings
    env = dict(
        os.environ,
        VOD2S3_DATABASE_URL=settings.database_url,
        VOD2S3_MASTER_KEY=settings.master_key,
        VOD2S3_STORAGE_ROOT=str(settings.storage_root),
    )
    return subprocess.run(
        [VOD2S3, "accounts", "check", "--cdn", "158", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_accounts_check_tells_a_good_account_from_a_wrong_secret_and_a_missing_bucket(
    svc: RunningService, store: Store
) -> None:
    customer(svc, store)
    bucket = store.new_bucket()

    good = check(svc, "--bucket", bucket)

    assert good.returncode == 0, good.stderr
    rows = {row["check"]: row for row in json.loads(good.stdout)}
    assert rows["credentials, bucket, PutObject"]["result"] == "pass"
    assert rows["multipart and abort"]["result"] == "pass"
    if store.name == "moto":
        assert rows["integrity"]["result"] == "warn"  # verifies none of the checks
        assert rows["SSE-S3 (AES256)"]["result"] == "pass"
    else:
        assert "auto sends MD5" in rows["integrity"]["detail"]
        # Over http RGW refuses SSE; over https it accepts it and does not apply it.
        assert rows["SSE-S3 (AES256)"]["result"] == "warn"
    s3 = store.client()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # nothing left behind
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")

    missing = check(svc, "--bucket", "no-such-bucket-here")
    assert missing.returncode == 1
    first = json.loads(missing.stdout)[0]
    assert (first["result"], "no-such-bucket-here" in first["detail"]) == ("fail", True)

    if store.name != "moto":  # moto takes any secret
        svc.runtime.accounts.set_aws(
            158, store.access_key, "wrong", "us-east-1", endpoint_url=store.endpoint
        )
        wrong = check(svc, "--bucket", bucket)
        assert wrong.returncode == 1
        assert "secret" in json.loads(wrong.stdout)[0]["detail"].lower()


def test_on_rgw_a_killed_worker_is_resumed_and_a_cancel_aborts(
    tmp_path: Path, rgw_http: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash and cancel scenarios of the moto suite (tests/integration/test_worker_crash.py,
    test_cancel_retry.py), against RGW: a worker SIGKILLed mid-multipart is taken over and
    the object finished from the parts RGW holds; a cancelled multipart upload is aborted,
    leaving no parts in RGW."""
    store = rgw_http
    log = tmp_path / "workers.log"
    with serving(tmp_path, store, monkeypatch) as svc, FaultProxy(store.endpoint) as proxy:
        api = customer(svc, store, endpoint=proxy.url)
        bucket = store.new_bucket()
        data = os.urandom(6 * 5 * MiB)
        svc.write_source("sestore1/jb/long.mp4", data)
        svc.write_source("sestore1/jb/cancelled.mp4", data)
        proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.3, times=-1))
        long_id = api.upload("sestore1/jb/long.mp4", bucket, "private")["id"]

        # Taken over when found dead, not when its lease ends.
        env = worker_env(svc, VOD2S3_LEASE_SECONDS="120")
        with worker_process(env, log) as first:
            wait_until(first, log, lambda: api.get(long_id)["bytes_uploaded"] >= 2 * 5 * MiB)
            os.kill(first.pid, signal.SIGKILL)
        with worker_process(env, log) as second:
            wait_until(second, log, lambda: api.get(long_id)["state"] == "completed")
            record = api.get(long_id)
            assert record["attempts"] == 2, record

            cancelled_id = api.upload("sestore1/jb/cancelled.mp4", bucket, "private")["id"]
            wait_until(second, log, lambda: api.get(cancelled_id)["bytes_uploaded"] >= 5 * MiB)
            api.cancel(cancelled_id)
            s3 = store.client()
            wait_until(
                second, log, lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
            )
        assert api.get(cancelled_id)["state"] == "cancelled"

    stored = s3.get_object(Bucket=bucket, Key="long.mp4")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["long.mp4"]
