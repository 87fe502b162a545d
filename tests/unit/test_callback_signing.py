"""Callback signatures, and the verification snippets of docs/callbacks.md run as written."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, php_binary
from vod2s3.callbacks.http import post
from vod2s3.callbacks.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    callback_headers,
    sign,
    signature_header,
    verify,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "callbacks.md"
SECRET = "8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f"
OLD_SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
TIMESTAMP = 1_767_225_600
DELIVERY = "0b6f4c1e-8f5a-4d0c-9b1e-4f3c2a7d9e10"
# Non-ASCII and an escaped slash: the signature is over the bytes, whatever they hold.
BODY = json.dumps(
    {
        "status": "success",
        "message": "Successfully Uploaded to AWS",
        "data": {"id": 42, "path": "sestore1/jb/vidéo.mp4", "callback": "https:\\/\\/x"},
    },
    ensure_ascii=False,
).encode("utf-8")
FULLWIDTH_DIGITS = {ord(digit): 0xFF10 + int(digit) for digit in "0123456789"}
# The same number in full-width digits: int() reads it, but it is not what was signed.
WIDE_TIMESTAMP = str(TIMESTAMP).translate(FULLWIDTH_DIGITS)
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


# --- safety net: nothing in this module may reach past loopback --------------------------------


pytestmark = pytest.mark.usefixtures("network_guard")


# --- the scheme --------------------------------------------------------------------------------


def by_hand(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_known_vector() -> None:
    expected = by_hand(SECRET, TIMESTAMP, BODY)
    assert sign(SECRET, TIMESTAMP, BODY) == expected
    # Fixed, from outside Python, so by_hand and sign cannot drift together:
    # printf '%s' '1767225600.{"a":1}' | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
    assert sign(SECRET, TIMESTAMP, b'{"a":1}') == "sQ0J5vEubA0Wo3C4az6bjEVmYLrBMXPAilDVMaz2bfA="
    assert len(base64.b64decode(expected)) == 32


def test_signature_header_one_secret() -> None:
    assert signature_header([SECRET], TIMESTAMP, BODY) == f"v1={by_hand(SECRET, TIMESTAMP, BODY)}"


def test_signature_header_during_rotation_current_first() -> None:
    header = signature_header([SECRET, OLD_SECRET], TIMESTAMP, BODY)
    assert header == (
        f"v1={by_hand(SECRET, TIMESTAMP, BODY)} v1={by_hand(OLD_SECRET, TIMESTAMP, BODY)}"
    )


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], TIMESTAMP, BODY)


def test_callback_headers() -> None:
    headers = callback_headers([SECRET, OLD_SECRET], TIMESTAMP, DELIVERY, BODY)
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "vod2s3-callbacks/1",
        TIMESTAMP_HEADER: str(TIMESTAMP),
        DELIVERY_HEADER: DELIVERY,
        SIGNATURE_HEADER: signature_header([SECRET, OLD_SECRET], TIMESTAMP, BODY),
    }
    assert (TIMESTAMP_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER) == (
        "X-Vod2s3-Timestamp",
        "X-Vod2s3-Delivery",
        "X-Vod2s3-Signature",
    )


def test_verify_accepts_either_secret_during_rotation() -> None:
    headers = callback_headers([SECRET, OLD_SECRET], TIMESTAMP, DELIVERY, BODY)
    assert verify(SECRET, headers, BODY, now=TIMESTAMP)
    assert verify(OLD_SECRET, headers, BODY, now=TIMESTAMP + 299)
    assert not verify("another secret", headers, BODY, now=TIMESTAMP)


def test_verify_header_names_are_case_insensitive() -> None:
    headers = callback_headers([SECRET], TIMESTAMP, DELIVERY, BODY)
    lowered = {name.lower(): value for name, value in headers.items()}
    upper = {name.upper(): value for name, value in headers.items()}
    assert verify(SECRET, lowered, BODY, now=TIMESTAMP)
    assert verify(SECRET, upper, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("change", "now"),
    [
        (lambda h, b: (h, b + b" "), TIMESTAMP),
        (lambda h, b: (h, b.replace(b"success", b"failure")), TIMESTAMP),
        (lambda h, b: (h, b), TIMESTAMP + 301),
        (lambda h, b: (h, b), TIMESTAMP - 301),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: str(TIMESTAMP + 1)}, b), TIMESTAMP),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b), TIMESTAMP),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: WIDE_TIMESTAMP}, b), TIMESTAMP),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), TIMESTAMP),
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), TIMESTAMP),
        (lambda h, b: ({**h, SIGNATURE_HEADER: ""}, b), TIMESTAMP),
        (lambda h, b: ({**h, SIGNATURE_HEADER: h[SIGNATURE_HEADER][3:]}, b), TIMESTAMP),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v2" + h[SIGNATURE_HEADER][2:]}, b), TIMESTAMP),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v1=é"}, b), TIMESTAMP),
    ],
    ids=[
        "body-appended",
        "body-changed",
        "too-old",
        "too-far-ahead",
        "timestamp-changed",
        "timestamp-not-a-number",
        "timestamp-non-ascii-digits",
        "no-timestamp",
        "no-signature",
        "empty-signature",
        "no-version",
        "unknown-version",
        "non-ascii-signature",
    ],
)
def test_verify_rejects(
    change: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]], now: int
) -> None:
    headers, body = change(callback_headers([SECRET], TIMESTAMP, DELIVERY, BODY), BODY)
    assert not verify(SECRET, headers, body, now=now)


def test_verify_ignores_unknown_versions_next_to_v1() -> None:
    headers = callback_headers([SECRET], TIMESTAMP, DELIVERY, BODY)
    headers[SIGNATURE_HEADER] = "v2=whatever " + headers[SIGNATURE_HEADER]
    assert verify(SECRET, headers, BODY, now=TIMESTAMP)


# --- the snippets in docs/callbacks.md ---------------------------------------------------------


def doc_snippet(language: str) -> str:
    """The one fenced code block of ``language`` in the doc, so the doc and the test are the
    same text."""
    blocks = re.findall(
        rf"^```{language}\n(.*?)^```\s*$", DOC.read_text(encoding="utf-8"), re.M | re.S
    )
    assert len(blocks) == 1, f"expected one ```{language} block in {DOC}"
    return str(blocks[0])


def signed_now(secrets: list[str], body: bytes = BODY, age: int = 0) -> dict[str, str]:
    return callback_headers(secrets, int(time.time()) - age, DELIVERY, body)


def test_python_snippet_verifies() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(doc_snippet("python"), str(DOC), "exec"), namespace)  # noqa: S102
    verified: Callable[..., bool] = namespace["vod2s3_verified"]

    assert verified(SECRET, signed_now([SECRET]), BODY)
    rotation = signed_now([SECRET, OLD_SECRET])
    assert verified(SECRET, rotation, BODY)
    assert verified(OLD_SECRET, rotation, BODY)
    lowered = {name.lower(): value for name, value in rotation.items()}
    assert verified(SECRET, lowered, BODY)

    assert not verified("another secret", rotation, BODY)
    assert not verified(SECRET, rotation, BODY + b" ")
    assert not verified(SECRET, signed_now([SECRET], age=301), BODY)
    assert not verified(SECRET, {}, BODY)
    no_signature = {k: v for k, v in rotation.items() if k != SIGNATURE_HEADER}
    assert not verified(SECRET, no_signature, BODY)
    assert not verified(SECRET, {**rotation, SIGNATURE_HEADER: "v1=é"}, BODY)


@contextlib.contextmanager
def php_receiver(tmp_path: Path, secret: str) -> Iterator[int]:
    """The doc's PHP receiver, served by PHP's built-in web server on 127.0.0.1."""
    php = php_binary()
    script = tmp_path / "receiver.php"
    script.write_text(doc_snippet("php"), encoding="utf-8")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "VOD2S3_SECRET": secret}
    proc = subprocess.Popen(
        [php, "-S", f"127.0.0.1:{port}", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"php -S exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.php
def test_php_snippet_verifies(tmp_path: Path) -> None:
    with php_receiver(tmp_path, OLD_SECRET) as port:
        url = f"http://127.0.0.1:{port}/callback"

        def deliver(headers: dict[str, str], body: bytes = BODY) -> int:
            return post(url, body, headers, allow=LOOPBACK, timeout=10).status

        # Signed with the new and the old secret: a receiver still on the old one accepts.
        assert deliver(signed_now([SECRET, OLD_SECRET])) == 200
        assert deliver(signed_now([OLD_SECRET])) == 200
        assert deliver(signed_now([SECRET])) == 401
        assert deliver(signed_now([OLD_SECRET]), BODY + b" ") == 401
        assert deliver(signed_now([OLD_SECRET], age=301)) == 401
        tampered = {**signed_now([OLD_SECRET]), TIMESTAMP_HEADER: str(int(time.time()) + 1)}
        assert deliver(tampered) == 401
        missing = {k: v for k, v in signed_now([OLD_SECRET]).items() if k != SIGNATURE_HEADER}
        assert deliver(missing) == 401

        # The receiver read the JSON it was sent.
        with httpx.Client(trust_env=False) as client:
            answer = client.post(url, content=BODY, headers=signed_now([OLD_SECRET]))
        assert answer.status_code == 200
        assert answer.json() == {"received": 42}
