"""The fault-injecting reverse proxy (tests/faultproxy.py) in front of the real moto server."""

from __future__ import annotations

import http.client
import io
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tests.faultproxy import FaultProxy, Rule, Seen, operation_of
from tests.helpers import free_port

MIB = 1024 * 1024


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as running:
        yield running


def client_via(proxy: FaultProxy, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture
def client(proxy: FaultProxy) -> Any:
    return client_via(proxy)


def error_of(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def statuses(proxy: FaultProxy, operation: str) -> list[int]:
    return [seen.status for seen in proxy.seen if seen.operation == operation]


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("PUT", "/b/k", {}, "PutObject"),
        ("PUT", "/b/dir/k.mp4", {"x-id": "PutObject"}, "PutObject"),
        ("PUT", "/b/k", {"partNumber": "3", "uploadId": "u", "x-id": "UploadPart"}, "UploadPart"),
        ("PUT", "/b/k", {"tagging": ""}, "Other"),
        ("POST", "/b/k", {"uploads": ""}, "CreateMultipartUpload"),
        ("POST", "/b/k", {"uploadId": "u"}, "CompleteMultipartUpload"),
        (
            "DELETE",
            "/b/k",
            {"uploadId": "u", "x-id": "AbortMultipartUpload"},
            "AbortMultipartUpload",
        ),
        ("DELETE", "/b/k", {"x-id": "DeleteObject"}, "Other"),
        ("GET", "/b/k", {"uploadId": "u", "max-parts": "1000"}, "ListParts"),
        ("GET", "/b", {"uploads": ""}, "ListMultipartUploads"),
        ("GET", "/b/", {"uploads": "", "prefix": "p"}, "ListMultipartUploads"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("GET", "/b/k", {"x-id": "GetObject", "response-content-type": "a/b"}, "GetObject"),
        ("GET", "/b/k", {"X-Amz-Signature": "s", "X-Amz-Credential": "c"}, "GetObject"),
        ("GET", "/b/k", {"acl": ""}, "Other"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("PUT", "/b/", {}, "CreateBucket"),
        ("PUT", "/b", {"versioning": ""}, "Other"),
        ("GET", "/b", {"list-type": "2"}, "Other"),
        ("GET", "/", {}, "Other"),
        ("HEAD", "/b", {}, "Other"),
    ],
)
def test_operation_of(method: str, path: str, query: dict[str, str], expected: str) -> None:
    assert operation_of(method, path, query) == expected


def test_bad_rules_are_refused() -> None:
    proxy = FaultProxy("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="action"):
        proxy.add_rule(Rule(action="explode"))
    with pytest.raises(ValueError, match="times"):
        proxy.add_rule(Rule(times=-2))
    with pytest.raises(ValueError, match="header"):
        proxy.add_rule(Rule(action="headers", headers={"x-a": "1\r\nx-b: 2"}))
    with pytest.raises(ValueError, match="rate"):
        proxy.add_rule(Rule(action="slow"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = proxy.url


# --- faithful forwarding ----------------------------------------------------------------------


def test_put_object_round_trips_and_is_counted(
    proxy: FaultProxy, client: Any, bucket: str, s3_client: Any
) -> None:
    data = os.urandom(MIB + 7)
    started = time.monotonic()
    put = client.put_object(Bucket=bucket, Key="dir/a b.mp4", Body=io.BytesIO(data))
    # A file-like body makes botocore send Expect: 100-continue; without a "100 Continue"
    # answer it would wait a whole second before sending the body.
    assert time.monotonic() - started < 0.9

    assert s3_client.get_object(Bucket=bucket, Key="dir/a b.mp4")["Body"].read() == data
    assert client.get_object(Bucket=bucket, Key="dir/a b.mp4")["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key="dir/a b.mp4")
    assert head["ContentLength"] == len(data)  # HEAD keeps upstream's Content-Length
    assert head["ETag"] == put["ETag"]

    assert proxy.count("PutObject") == 1
    assert proxy.count("GetObject") == 1
    assert proxy.count("HeadObject") == 1
    first = proxy.seen[0]
    assert (first.method, first.path, first.operation) == (
        "PUT",
        "/videos/dir/a b.mp4",
        "PutObject",
    )
    assert (first.body_bytes, first.status, first.part_number) == (len(data), 200, None)


def test_multipart_upload_is_counted_by_part(proxy: FaultProxy, client: Any, bucket: str) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    parts = []
    for number in (1, 2):
        body = io.BytesIO(bytes([number]) * (5 * MIB))
        etag = client.upload_part(
            Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )

    assert proxy.count("CreateMultipartUpload") == 1
    assert proxy.count("UploadPart") == 2
    assert proxy.count("CompleteMultipartUpload") == 1
    assert proxy.part_numbers() == [1, 2]
    part = next(seen for seen in proxy.seen if seen.operation == "UploadPart")
    assert part.query["uploadId"] == upload_id
    assert part.body_bytes == 5 * MIB
    assert client.head_object(Bucket=bucket, Key="big")["ContentLength"] == 10 * MIB


def test_keep_alive_and_expect_100_continue_on_one_connection(
    proxy: FaultProxy, bucket: str, s3_client: Any
) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        reader = sock.makefile("rb")
        sock.sendall(
            b"PUT /videos/expect HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"  # before any body is sent
        assert reader.readline() == b"\r\n"
        sock.sendall(b"hello")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        response.read()
        assert not response.will_close
    assert s3_client.get_object(Bucket=bucket, Key="expect")["Body"].read() == b"hello"

    # Unsigned requests: moto refuses anonymous GETs of private objects (403), but the
    # connection must survive every kind of answer, bodiless HEAD included.
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("HEAD", "/videos/missing")
    missing = conn.getresponse()
    assert (missing.status, missing.read()) == (404, b"")
    first = conn.sock
    conn.request("GET", "/videos/missing")
    refused = conn.getresponse()
    assert refused.status in (403, 404)
    assert b"<Error>" in refused.read()
    conn.request("PUT", "/videos/second", body=b"xyz")
    assert conn.getresponse().read() == b""
    assert conn.sock is first  # all three on one kept-alive connection
    conn.close()
    assert s3_client.get_object(Bucket=bucket, Key="second")["Body"].read() == b"xyz"


def test_chunked_request_body_is_forwarded_with_a_length(
    proxy: FaultProxy, bucket: str, s3_client: Any
) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("PUT", "/videos/chunked", body=iter([b"abc", b"", b"defg"]), encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()

    assert s3_client.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"abcdefg"
    assert proxy.seen[0].body_bytes == 7


def test_unreachable_upstream_gives_502() -> None:
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/videos/x")
        assert conn.getresponse().status == 502
        conn.close()
        assert [seen.status for seen in proxy.seen] == [502]


# --- faults -----------------------------------------------------------------------------------


def test_slowdown_on_part_2_fires_once_and_the_retry_passes(
    proxy: FaultProxy, client: Any, bucket: str
) -> None:
    proxy.add_rule(Rule(operation="UploadPart", part_number=2))
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]

    def send(number: int) -> dict[str, Any]:
        body = io.BytesIO(bytes([number]) * (5 * MIB))
        response = client.upload_part(
            Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    first = send(1)
    with pytest.raises(ClientError) as raised:
        send(2)
    assert error_of(raised.value) == ("SlowDown", 503)
    second = send(2)
    client.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload={"Parts": [first, second]}
    )

    assert proxy.part_numbers() == [1, 2, 2]
    assert statuses(proxy, "UploadPart") == [200, 503, 200]
    assert statuses(proxy, "CreateMultipartUpload") == [200]
    assert proxy.seen[2].body_bytes == 5 * MIB  # the refused part was read in full


def test_drop_closes_the_connection_without_a_response(
    proxy: FaultProxy, client: Any, bucket: str, s3_client: Any
) -> None:
    proxy.add_rule(Rule(operation="PutObject", action="drop"))
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client.put_object(Bucket=bucket, Key="dropped", Body=io.BytesIO(b"x" * 1000))

    assert statuses(proxy, "PutObject") == [0]
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # never forwarded
    client.put_object(Bucket=bucket, Key="dropped", Body=b"x")  # a new connection works
    assert statuses(proxy, "PutObject") == [0, 200]


def test_delay_past_the_read_timeout_still_goes_through(
    proxy: FaultProxy, bucket: str, s3_client: Any
) -> None:
    proxy.add_rule(Rule(operation="PutObject", action="delay", delay=1.5))
    impatient = client_via(proxy, read_timeout=0.5, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        impatient.put_object(Bucket=bucket, Key="late", Body=b"late")
    assert time.monotonic() - started < 1.4

    deadline = time.monotonic() + 5
    while not proxy.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses(proxy, "PutObject") == [200]
    assert s3_client.get_object(Bucket=bucket, Key="late")["Body"].read() == b"late"


def test_added_headers_are_parsed_by_boto3(proxy: FaultProxy, client: Any, bucket: str) -> None:
    expiration = 'expiry-date="Fri, 23 Dec 2033 00:00:00 GMT", rule-id="videos-expire"'
    proxy.add_rule(
        Rule(
            operation="PutObject",
            action="headers",
            headers={"x-amz-expiration": expiration, "x-amz-request-charged": "requester"},
        )
    )
    response = client.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert response["Expiration"] == expiration
    assert response["RequestCharged"] == "requester"
    assert "Expiration" not in client.put_object(Bucket=bucket, Key="k", Body=b"data")


def test_error_200_on_complete_multipart_upload_raises(
    proxy: FaultProxy, client: Any, bucket: str, s3_client: Any
) -> None:
    proxy.add_rule(Rule(operation="CompleteMultipartUpload", action="error_200"))
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    etag = client.upload_part(
        Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=1, Body=b"tail"
    )["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}

    with pytest.raises(ClientError) as raised:
        client.complete_multipart_upload(
            Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload=parts
        )
    assert error_of(raised.value)[0] == "InternalError"
    assert statuses(proxy, "CompleteMultipartUpload") == [200]  # as sent on the wire
    # Not forwarded: the upload is still open, and completing it again works.
    held = s3_client.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)["Parts"]
    assert [part["PartNumber"] for part in held] == [1]
    client.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload=parts
    )
    assert s3_client.get_object(Bucket=bucket, Key="big")["Body"].read() == b"tail"


def test_times_minus_one_fires_every_time_until_cleared(
    proxy: FaultProxy, client: Any, bucket: str
) -> None:
    proxy.add_rule(Rule(operation="PutObject", status=500, code="InternalError", times=-1))
    for _ in range(3):
        with pytest.raises(ClientError) as raised:
            client.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert error_of(raised.value) == ("InternalError", 500)
    assert statuses(proxy, "PutObject") == [500, 500, 500]

    proxy.clear()
    assert proxy.seen == []
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert statuses(proxy, "PutObject") == [200]


def test_times_counts_firings_and_rules_fire_in_order(
    proxy: FaultProxy, client: Any, bucket: str
) -> None:
    proxy.add_rule(Rule(operation="PutObject", status=500, code="InternalError", times=2))
    proxy.add_rule(Rule(operation="PutObject", status=503, code="SlowDown", times=1))
    codes = []
    for _ in range(4):
        try:
            client.put_object(Bucket=bucket, Key="k", Body=b"x")
            codes.append("ok")
        except ClientError as exc:
            codes.append(error_of(exc)[0])
    assert codes == ["InternalError", "InternalError", "SlowDown", "ok"]


def test_filtered_rules_do_not_fire_on_other_operations(
    proxy: FaultProxy, client: Any, bucket: str
) -> None:
    proxy.add_rule(Rule(operation="CompleteMultipartUpload", times=-1))
    proxy.add_rule(Rule(operation="UploadPart", part_number=2, times=-1))
    proxy.add_rule(Rule(operation="HeadObject", action="drop", times=-1))
    client.put_object(Bucket=bucket, Key="small", Body=b"x")
    client.get_object(Bucket=bucket, Key="small")["Body"].read()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    for number in (1, 3):
        client.upload_part(
            Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=number, Body=b"p"
        )
    client.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)
    client.list_multipart_uploads(Bucket=bucket)
    client.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload_id)

    seen: list[Seen] = proxy.seen
    assert [s.operation for s in seen] == [
        "PutObject",
        "GetObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "ListParts",
        "ListMultipartUploads",
        "AbortMultipartUpload",
    ]
    assert all(s.status in (200, 204) for s in seen)
    assert proxy.part_numbers() == [1, 3]


def test_stall_reads_no_body_and_answers_nothing(
    proxy: FaultProxy, bucket: str, s3_client: Any
) -> None:
    """The client's body fills the buffers and goes no further: its send times out."""
    proxy.add_rule(Rule(operation="PutObject", action="stall"))
    impatient = client_via(proxy, connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises((ReadTimeoutError, ConnectionClosedError, EndpointConnectionError)):
        impatient.put_object(Bucket=bucket, Key="stalled", Body=os.urandom(64 * MIB))

    assert statuses(proxy, "PutObject") == [0]
    assert proxy.seen[0].body_bytes == 0
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # never forwarded
    impatient.put_object(Bucket=bucket, Key="after", Body=b"x")  # the next one goes through
    assert statuses(proxy, "PutObject") == [0, 200]


def test_most_in_flight_counts_requests_held_at_once_by_operation(
    proxy: FaultProxy, bucket: str
) -> None:
    proxy.add_rule(Rule(operation="PutObject", action="delay", delay=0.5, times=-1))
    clients = [client_via(proxy) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        for done in [
            pool.submit(c.put_object, Bucket=bucket, Key=f"k{i}", Body=b"x")
            for i, c in enumerate(clients)
        ]:
            done.result()

    assert proxy.most_in_flight("PutObject") == 3
    assert proxy.most_in_flight("UploadPart") == 0
    proxy.clear()
    assert proxy.most_in_flight("PutObject") == 0


def test_slow_reads_the_body_at_the_rate_and_forwards_it(
    proxy: FaultProxy, client: Any, bucket: str, s3_client: Any
) -> None:
    proxy.add_rule(Rule(operation="PutObject", action="slow", rate=256 * 1024))
    data = os.urandom(512 * 1024)

    client.put_object(Bucket=bucket, Key="slow", Body=data)

    arrivals = proxy.body_bytes()
    assert arrivals[-1][0] - arrivals[0][0] >= 1.0  # 8 pieces of 64 KiB, each paid for
    assert statuses(proxy, "PutObject") == [200]
    assert proxy.in_flight_of("PutObject") == 0
    assert s3_client.get_object(Bucket=bucket, Key="slow")["Body"].read() == data
