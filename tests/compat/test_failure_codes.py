"""ScaleEngine's failure codes, failures answered with HTTP 200 for clients that read only
successful bodies, and the /dev/ path of ScaleEngine's Perl client (issue 13, items 7-9)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.envelopes import envelope_of
from tests.security.support import post_json, request_object, sign, signed_text
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.errors import API_CODES, Vod2s3Error
from vod2s3.jsonenc import php_json_encode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture
def svc(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    settings = make_settings(tmp_path, max_queued_per_account=1, max_body_bytes=2048)
    with running_service(settings, s3_endpoint) as running:
        yield running


def form(http: httpx.Client, url: str, text: str) -> httpx.Response:
    return http.post(url, data={"json": text})


Case = Callable[[httpx.Client, RunningService, IssuedCredentials], httpx.Response]


def _wrong_secret(http: httpx.Client, svc: RunningService, who: IssuedCredentials) -> Any:
    return form(http, svc.url, php_json_encode(sign(request_object(who, "aws.status"), "x" * 64)))


def _queue_two(http: httpx.Client, svc: RunningService, who: IssuedCredentials) -> Any:
    for name in ("a.mp4", "b.mp4"):
        svc.write_source(f"sestore1/{who.storage_user}/{name}", b"v")
    path = f"sestore1/{who.storage_user}/a.mp4"
    form(http, svc.url, signed_text(who, "aws.upload", path=path, bucket="bkt1", acl="private"))
    path = f"sestore1/{who.storage_user}/b.mp4"
    return form(
        http, svc.url, signed_text(who, "aws.upload", path=path, bucket="bkt1", acl="private")
    )


CASES: dict[str, tuple[str, int, Case]] = {
    "unknown command": (
        "0000",
        400,
        lambda http, svc, who: form(http, svc.url, signed_text(who, "aws.nothing")),
    ),
    "wrong secret": ("0001", 401, _wrong_secret),
    "old timestamp": (
        "0002",
        401,
        lambda http, svc, who: form(
            http, svc.url, signed_text(who, "aws.status", timestamp=time.time() - 3600)
        ),
    ),
    "missing field": (
        "0006",
        400,
        lambda http, svc, who: form(http, svc.url, '{"command":"aws.status"}'),
    ),
    "bad field": (
        "2001",
        400,
        lambda http, svc, who: form(http, svc.url, signed_text(who, "aws.status", limit=0)),
    ),
    "not json": ("2002", 400, lambda http, svc, who: form(http, svc.url, "{nope")),
    "media type": (
        "2003",
        415,
        lambda http, svc, who: http.post(svc.url, content=b"{}", headers={"Content-Type": "a/b"}),
    ),
    "too large": (
        "2004",
        413,
        lambda http, svc, who: post_json(http, svc.url, '{"x":"' + "a" * 4096 + '"}'),
    ),
    "method": ("2006", 405, lambda http, svc, who: http.get(svc.url)),
    "unknown endpoint": ("2007", 404, lambda http, svc, who: http.post(svc.base_url + "/x")),
    "unknown id": (
        "2008",
        404,
        lambda http, svc, who: form(http, svc.url, signed_text(who, "aws.status", id=999)),
    ),
    "outside the folder": (
        "2010",
        403,
        lambda http, svc, who: form(
            http,
            svc.url,
            signed_text(
                who, "aws.upload", path="sestore1/someone/a.mp4", bucket="bkt1", acl="private"
            ),
        ),
    ),
    "queue full": ("2011", 429, _queue_two),
    "bucket not allowed": (
        "2012",
        403,
        lambda http, svc, who: form(
            http,
            svc.url,
            signed_text(
                who,
                "aws.upload",
                path=f"sestore1/{who.storage_user}/a.mp4",
                bucket="nope",
                acl="private",
            ),
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_carries_its_code(svc: RunningService, http: httpx.Client, case: str) -> None:
    code, status, send = CASES[case]
    who = svc.add_account(158, "jb", buckets=["bkt1"])

    response = send(http, svc, who)

    body = envelope_of(response)
    assert (response.status_code, body["status"], body["code"]) == (status, "failure", code), body


def test_a_disabled_account_gets_0005(svc: RunningService, http: httpx.Client) -> None:
    who = svc.add_account(158, "jb")
    svc.runtime.accounts.set_disabled(158, True)
    body = envelope_of(form(http, svc.url, signed_text(who, "aws.status")))
    assert body["code"] == "0005"


def test_every_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `(\d{4})` \|", DOCS.read_text(), re.MULTILINE))
    codes = set(API_CODES) | {Vod2s3Error.api_code}
    assert documented == codes


@pytest.fixture
def answered_200(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    settings = make_settings(tmp_path, failure_http_status="200", rate_limit=1.0, rate_burst=1)
    with running_service(settings, s3_endpoint) as running:
        yield running


def test_failures_answered_with_200_keep_their_envelope_and_retry_after(
    answered_200: RunningService, http: httpx.Client
) -> None:
    svc = answered_200
    who = svc.add_account(158, "jb")

    wrong = _wrong_secret(http, svc, who)
    assert wrong.status_code == 200
    assert envelope_of(wrong)["code"] == "0001"
    assert form(http, svc.url, signed_text(who, "aws.status")).status_code == 200  # success
    limited = form(http, svc.url, signed_text(who, "aws.status", limit=2))
    assert limited.status_code == 200
    assert envelope_of(limited)["code"] == "1000"
    assert limited.headers["Retry-After"] == "1"
    # Other paths are not ScaleEngine's endpoints: their statuses stay.
    assert http.get(svc.base_url + "/nowhere").status_code == 404
    # The metrics count what happened, not the status that carried it.
    metrics = http.get(svc.base_url + "/metrics").text
    assert re.search(r'vod2s3_api_requests_total\{[^}]*status="401"[^}]*\} 1\.0', metrics)


def test_an_account_chooses_its_own_failure_status(svc: RunningService, http: httpx.Client) -> None:
    legacy = svc.add_account(158, "jb")
    modern = svc.add_account(159, "other")
    svc.runtime.accounts.set_failure_status(158, "200")

    unknown_id = form(http, svc.url, signed_text(legacy, "aws.status", id=999))
    assert (unknown_id.status_code, envelope_of(unknown_id)["code"]) == (200, "2008")
    # Before authentication the account is not known: the service's setting applies.
    assert _wrong_secret(http, svc, legacy).status_code == 401
    assert form(http, svc.url, signed_text(modern, "aws.status", id=999)).status_code == 404
    svc.runtime.accounts.set_failure_status(158, None)
    assert form(http, svc.url, signed_text(legacy, "aws.status", id=998)).status_code == 404


def test_dev_answers_as_stable_does(svc: RunningService, http: httpx.Client) -> None:
    who = svc.add_account(158, "jb")
    for path in ("/dev/", "/dev"):
        response = form(http, svc.base_url + path, signed_text(who, "aws.status", limit=3))
        assert envelope_of(response)["status"] == "success"
    refused = http.get(svc.base_url + "/dev/")
    assert (refused.status_code, refused.headers["Allow"]) == (405, "POST")
