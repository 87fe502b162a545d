"""Every aws.upload check of SPEC §3.1 over real HTTP: each refusal has its own status and
message and queues nothing; accepted variants are stored as given and reach S3."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.envelopes import envelope_of
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.signature import compute_signature
from vod2s3.headers import decode_value
from vod2s3.jsonenc import php_json_encode

SOURCE = "clip.mp4"


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[RunningService]:
    """One API server for the refusals (nothing they send is ever drained)."""
    settings = make_settings(tmp_path_factory.mktemp("upload-checks"))
    with running_service(settings, moto_endpoint) as running:
        yield running


_cdns = itertools.count(2000)


def new_account(svc: RunningService, buckets: list[str] | None = None) -> IssuedCredentials:
    cdn = next(_cdns)
    issued = svc.add_account(cdn, f"user{cdn}", buckets=buckets)
    svc.write_source(f"sestore1/user{cdn}/{SOURCE}", b"source video")
    return issued


@pytest.fixture
def acct(svc: RunningService) -> IssuedCredentials:
    return new_account(svc)


def folder(issued: IssuedCredentials) -> str:
    return f"sestore1/{issued.storage_user}"


def upload_fields(issued: IssuedCredentials, **overrides: Any) -> dict[str, Any]:
    """A valid aws.upload's own fields, with ``overrides``; a value of ``...`` drops the field."""
    fields: dict[str, Any] = {
        "path": f"{folder(issued)}/{SOURCE}",
        "bucket": "videos",
        "acl": "private",
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not ...}


def signed(issued: IssuedCredentials, command: str, fields: dict[str, Any]) -> str:
    obj = {
        "command": command,
        "api_key": issued.api_key,
        "timestamp": int(time.time()),
        "cdn": issued.cdn,
        **fields,
    }
    obj["signature"] = compute_signature(issued.secret, php_json_encode(obj))
    return php_json_encode(obj)


def send(http: httpx.Client, url: str, issued: IssuedCredentials, **fields: Any) -> httpx.Response:
    """aws.upload as the original PHP example sends it: form field 'json'."""
    text = signed(issued, "aws.upload", upload_fields(issued, **fields))
    return http.post(url, data={"json": text})


def queued(response: httpx.Response) -> dict[str, Any]:
    body = envelope_of(response)
    assert response.status_code == 200, body
    assert body["status"] == "success"
    assert body["message"] == "AWS Upload Queued"
    record: dict[str, Any] = body["data"]
    assert record["state"] == "queued"
    return record


def uploads_of(svc: RunningService, http: httpx.Client, issued: IssuedCredentials) -> list[Any]:
    """The account's uploads as aws.status reports them, checked against the store too."""
    response = http.post(svc.url, data={"json": signed(issued, "aws.status", {"limit": 1000})})
    body = envelope_of(response)
    assert body["status"] == "success", body
    account_id = svc.runtime.accounts.get(issued.cdn).id
    assert len(svc.runtime.uploads.latest(account_id, 1000, 0)) == len(body["data"])
    data: list[Any] = body["data"]
    return data


def refused(
    svc: RunningService,
    http: httpx.Client,
    issued: IssuedCredentials,
    status: int,
    expected: tuple[str, ...],
    **fields: Any,
) -> str:
    """Send aws.upload with ``fields``; assert the refusal and that nothing was queued."""
    response = send(http, svc.url, issued, **fields)
    body = envelope_of(response)
    assert response.status_code == status, body
    assert body["status"] == "failure"
    assert body["data"] is None
    for text in expected:
        assert text in body["message"], (text, body["message"])
    assert uploads_of(svc, http, issued) == []
    return str(body["message"])


# -- required fields and acl -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["path", "bucket", "acl"])
@pytest.mark.parametrize("value", [..., None, ""], ids=["absent", "null", "empty"])
def test_required_field_missing(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, field: str, value: Any
) -> None:
    refused(svc, http, acct, 400, (f"Field '{field}' is required",), **{field: value})


@pytest.mark.parametrize("field", ["path", "bucket", "acl"])
def test_required_field_not_a_string(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, field: str
) -> None:
    refused(svc, http, acct, 400, (f"Field '{field}' must be a string",), **{field: ["x"]})


@pytest.mark.parametrize("acl", ["public-read-write", "authenticated-read", "PRIVATE", "public"])
def test_acl_other_than_private_or_public_read(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, acl: str
) -> None:
    refused(svc, http, acct, 400, ("Field 'acl' must be 'private' or 'public-read'",), acl=acl)


# -- the source path ---------------------------------------------------------------------------


def test_volume_that_does_not_exist(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    path = f"sestore9/{acct.storage_user}/{SOURCE}"
    refused(svc, http, acct, 400, ("Volume 'sestore9'", "does not exist"), path=path)


def test_another_storage_users_folder_is_403(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    other = new_account(svc)
    path = f"{folder(other)}/{SOURCE}"  # exists, but belongs to the other account
    refused(
        svc,
        http,
        acct,
        403,
        (f"not in your storage folder '{acct.storage_user}'",),
        path=path,
    )


@pytest.mark.parametrize(
    "template",
    [
        "{folder}/../{other}/" + SOURCE,
        "{folder}/sub/../../{other}/" + SOURCE,
        "{folder}/./" + SOURCE,
        "sestore1/../sestore1/{user}/" + SOURCE,
    ],
)
def test_dot_segments_are_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, template: str
) -> None:
    other = new_account(svc)
    path = template.format(folder=folder(acct), other=other.storage_user, user=acct.storage_user)
    refused(svc, http, acct, 400, ("'.' or '..' segment",), path=path)


@pytest.mark.parametrize("prefix", ["/", "//"])
def test_absolute_path(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, prefix: str
) -> None:
    path = f"{prefix}{folder(acct)}/{SOURCE}"
    refused(svc, http, acct, 400, ("starts with '/'",), path=path)


@pytest.mark.parametrize("target", ["other-user", "volume-root", "system", "dangling"])
def test_symlink_leading_outside_the_folder_is_403(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, target: str
) -> None:
    other = new_account(svc)
    destinations = {
        "other-user": svc.storage_root / folder(other) / SOURCE,
        "volume-root": svc.storage_root / "sestore1",
        "system": "/etc/hostname",
        "dangling": "/nonexistent/secret.mp4",
    }
    link = svc.storage_root / folder(acct) / f"link-{target}.mp4"
    os.symlink(destinations[target], link)
    message = refused(
        svc,
        http,
        acct,
        403,
        ("leads outside your storage folder",),
        path=f"{folder(acct)}/link-{target}.mp4",
    )
    assert str(svc.storage_root) not in message  # operator paths never leak


def test_symlink_to_a_file_inside_the_folder_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    link = svc.storage_root / folder(acct) / "inside-link.mp4"
    os.symlink(SOURCE, link)
    record = queued(send(http, svc.url, acct, path=f"{folder(acct)}/inside-link.mp4"))
    assert record["destination_path"] == "inside-link.mp4"


def test_directory_is_not_a_file(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    (svc.storage_root / folder(acct) / "adir").mkdir()
    refused(svc, http, acct, 400, ("is a folder, not a regular file",), path=f"{folder(acct)}/adir")


@pytest.mark.parametrize("name", ["missing.mp4", "nodir/missing.mp4", "CLIP.MP4"])
def test_missing_file(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, name: str
) -> None:
    refused(svc, http, acct, 400, ("does not exist",), path=f"{folder(acct)}/{name}")


def test_path_naming_only_a_folder_is_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    refused(svc, http, acct, 400, ("does not name a file",), path=folder(acct))


# -- the bucket --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "detail"),
    [
        ("UPPER", "lowercase"),
        ("a", "3-63 characters"),
        ("ab", "3-63 characters"),
        ("-bad-", "starting and ending with a letter or digit"),
        ("bad_underscore", "lowercase letters, digits"),
        ("x" * 64, "3-63 characters"),
        ("192.168.1.1", "IP address"),
        ("a..b", "'..'"),
        ("xn--videos", "reserves"),
        ("videos-s3alias", "reserves"),
    ],
)
def test_invalid_bucket_name(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, bucket: str, detail: str
) -> None:
    refused(
        svc,
        http,
        acct,
        400,
        ("Field 'bucket' is not a valid bucket name", detail),
        bucket=bucket,
    )


def test_bucket_not_allowed_for_the_account_is_403(svc: RunningService, http: httpx.Client) -> None:
    issued = new_account(svc, buckets=["only-this"])
    refused(
        svc,
        http,
        issued,
        403,
        ("Bucket 'videos' is not allowed for this account", "only-this"),
        bucket="videos",
    )
    assert queued(send(http, svc.url, issued, bucket="only-this"))["bucket"] == "only-this"


def test_account_without_aws_credentials_is_403(svc: RunningService, http: httpx.Client) -> None:
    cdn = next(_cdns)
    issued = svc.runtime.accounts.create(cdn, f"user{cdn}")
    svc.write_source(f"sestore1/user{cdn}/{SOURCE}", b"x")
    refused(svc, http, issued, 403, ("no AWS credentials", "set-aws"))


# -- destination_path --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("é" * 513, "longer than 1024 bytes"),  # 513 characters, 1026 bytes
        ("k" * 1025, "longer than 1024 bytes"),
        ("a" * 5000, "longer than"),
        ("videos/a\x07b.mp4", "control characters"),
        ("videos/a\nb.mp4", "control characters"),
        ("videos/a\x7fb.mp4", "control characters"),
        ("videos/a\u202eb.mp4", "control character \\u202e"),
        ("videos/a\u2028b.mp4", "control character \\u2028"),
        ("../other/video.mp4", "'..' segment"),
        ("videos/../../x.mp4", "'..' segment"),
        ("videos/..", "'..' segment"),
        ("/", "must name an object"),
        ("///", "must name an object"),
        (42, "must be a string"),
    ],
    ids=[
        "1026-bytes",
        "1025-ascii",
        "5000",
        "bell",
        "newline",
        "del",
        "right-to-left-override",
        "line-separator",
        "dotdot-first",
        "dotdot-inside",
        "dotdot-last",
        "slash",
        "slashes",
        "number",
    ],
)
def test_bad_destination_path(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    destination: Any,
    expected: str,
) -> None:
    refused(
        svc,
        http,
        acct,
        400,
        ("Field 'destination_path'", expected),
        destination_path=destination,
    )


@pytest.mark.parametrize("key", ["videos/..x.mp4", "videos/x...mp4", "a..b/c.mp4", "./v.mp4"])
def test_dots_that_are_not_a_parent_segment_are_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, key: str
) -> None:
    assert queued(send(http, svc.url, acct, destination_path=key))["destination_path"] == key


def test_destination_path_of_1024_bytes_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    key = "é" * 512
    assert queued(send(http, svc.url, acct, destination_path=key))["destination_path"] == key


def test_leading_slash_of_destination_path_is_dropped(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    record = queued(send(http, svc.url, acct, destination_path="/out/new name.mp4"))
    assert record["destination_path"] == "out/new name.mp4"


# -- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"bad key": "v"}, "Metadata key 'bad key' is not valid"),
        ({"ü": "v"}, "Metadata key 'ü' is not valid"),
        ({"title\n": "v"}, "is not valid"),
        ({"a:b": "v"}, "is not valid"),
        ({"": "v"}, "is not valid"),
        ({"title": "a\x00b"}, "must not contain control characters"),
        ({"title": "ok\r\nX-Amz-Acl: public-read"}, "must not contain control characters"),
        ({"title": "tab\there"}, "must not contain control characters"),
        ({"title": "x" * 2048}, "at most 2048 bytes"),
        ({f"k{n}": "é" * 60 for n in range(17)}, "at most 2048 bytes"),
        # 1605 bytes of UTF-8, but S3 receives the value RFC 2047-encoded: 2153 bytes.
        ({"title": "é" * 800}, "as sent to S3"),
        (["a"], "must be an object of strings"),
        ("not json", "must be an object of strings"),
        ('{"a":NaN}', "NaN is not allowed"),
        ('{"a":1e400}', "out of range"),
        ('{"a":"1","a":"2"}', "has the key 'a' twice"),
        ('["a"]', "must be an object of strings"),
        (True, "must be an object of strings"),
        (5, "must be an object of strings"),
        ({"title": ["a"]}, "Metadata value for 'title' must be a string"),
        ({"title": {"x": "y"}}, "must be a string"),
        ({"title": None}, "must be a string"),
        ({"title": True}, "must be a string"),
        ({"Title": "a", "title": "b"}, "appears twice"),
    ],
    ids=[
        "space-in-key",
        "non-ascii-key",
        "newline-after-key",
        "colon-in-key",
        "empty-key",
        "nul-in-value",
        "crlf-header-injection",
        "tab-in-value",
        "over-2kb",
        "over-2kb-utf8",
        "over-2kb-once-encoded",
        "list",
        "string-not-json",
        "string-with-nan",
        "string-with-1e400",
        "string-with-a-key-twice",
        "json-string-holding-list",
        "bool",
        "number",
        "list-value",
        "object-value",
        "null-value",
        "bool-value",
        "same-key-other-case",
    ],
)
def test_bad_metadata(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    metadata: Any,
    expected: str,
) -> None:
    refused(svc, http, acct, 400, (expected,), metadata=metadata)


@pytest.mark.parametrize(
    ("metadata", "stored"),
    [
        ({"n": 5, "f": 1.5}, {"n": "5", "f": "1.5"}),
        ([], {}),
        ({}, {}),
        ("", {}),
        ('{"title": "Holiday", "n": 3}', {"title": "Holiday", "n": "3"}),
        ({"Title-Case_x.y": "Café ☕"}, {"Title-Case_x.y": "Café ☕"}),
        ({"title": "é" * 500}, {"title": "é" * 500}),  # 1348 bytes once encoded
    ],
    ids=[
        "numbers",
        "php-empty-array",
        "empty-object",
        "empty-string",
        "json-string",
        "unicode",
        "long-unicode",
    ],
)
def test_accepted_metadata_is_stored_as_strings(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    metadata: Any,
    stored: dict[str, str],
) -> None:
    assert queued(send(http, svc.url, acct, metadata=metadata))["metadata"] == stored


def test_metadata_of_exactly_2048_bytes_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    metadata = {"title": "x" * (2048 - len("title"))}
    assert queued(send(http, svc.url, acct, metadata=metadata))["metadata"] == metadata


# -- callback ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        ("ftp://x", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("gopher://host/x", "must be an http:// or https:// URL"),
        ("http://", "has no host name"),
        ("https:///path", "has no host name"),
        ("http://my host.com/cb", "must not contain spaces"),
        (" http://host.com/cb", "must not contain spaces"),
        ("http://host.com/\r\nX: y", "must not contain spaces or control characters"),
        ("http://host.com/" + "a" * 2040, "longer than 2048 characters"),
        ("user:pw@host.com/cb", "must not contain a user name or password"),
        ("https://user@host.com/cb", "must not contain a user name or password"),
        ("http://host.com:99999/cb", "is not a valid URL"),
        (42, "must be a URL string"),
    ],
    ids=[
        "ftp",
        "file",
        "gopher",
        "no-host",
        "no-host-https",
        "space",
        "leading-space",
        "crlf",
        "too-long",
        "credentials-no-scheme",
        "user",
        "bad-port",
        "number",
    ],
)
def test_bad_callback(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    callback: Any,
    expected: str,
) -> None:
    refused(svc, http, acct, 400, ("Field 'callback'", expected), callback=callback)


@pytest.mark.parametrize(
    "callback",
    [
        "www.mycallbackurl.com/",
        "https://hooks.example.com/vod?x=1&y=%20",
        "HTTP://Example.COM:8080/cb",
        "http://host.com/" + "a" * 2032,  # exactly 2048 characters
    ],
    ids=["no-scheme", "https-query", "upper-case", "2048-chars"],
)
def test_accepted_callback_is_echoed_unchanged(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, callback: str
) -> None:
    assert queued(send(http, svc.url, acct, callback=callback))["callback"] == callback


def test_no_callback_is_an_empty_string(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    assert queued(send(http, svc.url, acct, callback=""))["callback"] == ""
    assert queued(send(http, svc.url, acct, callback=None, acl="public-read"))["callback"] == ""


# -- the S3 options beyond the original --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"content_type": "not a type"}, "Field 'content_type' must be a media type"),
        ({"content_type": "video"}, "Field 'content_type' must be a media type"),
        ({"content_type": "video/mp4\n"}, "Field 'content_type' must not contain control"),
        ({"storage_class": "CHEAP"}, "Field 'storage_class' must be 'STANDARD' or"),
        ({"storage_class": "standard_ia"}, "Field 'storage_class' must be"),
        ({"server_side_encryption": "rot13"}, "'AES256' or 'aws:kms'"),
        ({"sse_kms_key_id": "key-1"}, "needs 'server_side_encryption': 'aws:kms'"),
        (
            {"server_side_encryption": "AES256", "sse_kms_key_id": "key-1"},
            "needs 'server_side_encryption': 'aws:kms'",
        ),
        ({"request_payer": "me"}, "Field 'request_payer' must be 'requester'"),
        ({"cache_control": "max-age=1\r\nX-Evil: 1"}, "Field 'cache_control' must not contain"),
        ({"cache_control": 60}, "Field 'cache_control' must be a string"),
    ],
    ids=[
        "content-type-words",
        "content-type-no-subtype",
        "content-type-newline",
        "storage-class",
        "storage-class-lowercase",
        "sse",
        "kms-key-without-sse",
        "kms-key-with-aes256",
        "request-payer",
        "cache-control-crlf",
        "cache-control-number",
    ],
)
def test_bad_s3_option(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    fields: dict[str, Any],
    expected: str,
) -> None:
    refused(svc, http, acct, 400, (expected,), **fields)


# -- accepted variants that reach S3 -----------------------------------------------------------


def _upload_and_drain(
    service: RunningService, http: httpx.Client, bucket: str, **fields: Any
) -> tuple[dict[str, Any], IssuedCredentials]:
    issued = service.add_account(158, "jb")
    service.write_source(f"sestore1/jb/{SOURCE}", b"video bytes")
    record = queued(send(http, service.url, issued, bucket=bucket, **fields))
    assert service.drain() == 1
    final = service.client(issued).get(record["id"])
    assert final["state"] == "completed", final["message"]
    return final, issued


def test_fields_reach_s3(
    service: RunningService, http: httpx.Client, s3_client: Any, bucket: str
) -> None:
    record, _ = _upload_and_drain(
        service,
        http,
        bucket,
        destination_path="/out/film.mov",
        metadata={"title": "Café ☕", "n": 7},
        content_type="video/quicktime",
        cache_control="public, max-age=3600",
        storage_class="STANDARD_IA",
    )
    assert record["destination_path"] == "out/film.mov"
    assert record["metadata"] == {"title": "Café ☕", "n": "7"}
    head = s3_client.head_object(Bucket=bucket, Key="out/film.mov")
    assert head["ContentType"] == "video/quicktime"
    assert head["CacheControl"] == "public, max-age=3600"
    assert head["StorageClass"] == "STANDARD_IA"
    assert {k: decode_value(v) for k, v in head["Metadata"].items()} == record["metadata"]


def test_default_content_type_comes_from_the_extension(
    service: RunningService, http: httpx.Client, s3_client: Any, bucket: str
) -> None:
    _upload_and_drain(service, http, bucket, metadata=[])
    head = s3_client.head_object(Bucket=bucket, Key=SOURCE)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {}


def test_sse_kms_with_key_id_is_reported_in_results(
    service: RunningService, http: httpx.Client, s3_client: Any, bucket: str
) -> None:
    record, _ = _upload_and_drain(
        service,
        http,
        bucket,
        server_side_encryption="aws:kms",
        sse_kms_key_id="my-kms-key",
    )
    assert record["results"]["ServerSideEncryption"] == "aws:kms"
    assert "my-kms-key" in record["results"]["SSEKMSKeyId"]
    head = s3_client.head_object(Bucket=bucket, Key=SOURCE)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "my-kms-key" in head["SSEKMSKeyId"]


def test_server_still_serves_after_all_of_the_above(
    svc: RunningService, http: httpx.Client
) -> None:
    issued = new_account(svc)
    assert uploads_of(svc, http, issued) == []
    queued(send(http, svc.url, issued))
    assert len(uploads_of(svc, http, issued)) == 1
