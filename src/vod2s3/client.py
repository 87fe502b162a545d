"""The customer's Python client. It signs exactly as the original PHP example does:
``json_encode`` the request, HMAC-SHA256 it with the secret, base64, add ``signature``,
encode again, and POST it as the form field ``json``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from vod2s3.jsonenc import php_json_encode
from vod2s3.signing import sign_request


class ClientError(Exception):
    """The API answered with a failure envelope, or could not be reached."""

    def __init__(self, message: str, http_status: int = 0, response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.response = response


@dataclass
class Vod2s3Client:
    url: str
    cdn: int
    api_key: str
    secret: str = field(repr=False)
    timeout: float = 30.0
    # One pooled client for every call: building one per call costs ~20 ms of CPU.
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> Vod2s3Client:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        return self._http

    def build_request(self, command: str, **fields: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "command": command,
            "api_key": self.api_key,
            "timestamp": int(time.time()),
            "cdn": self.cdn,
        }
        request.update({k: v for k, v in fields.items() if v is not None})
        return sign_request(self.secret, request)

    def call(self, command: str, **fields: Any) -> dict[str, Any]:
        """Send a command; returns the whole envelope on success, raises ClientError on failure."""
        body = php_json_encode(self.build_request(command, **fields))
        try:
            response = self._client().post(self.url, data={"json": body})
        except httpx.HTTPError as error:
            raise ClientError(f"Could not reach {self.url}: {error}") from error
        try:
            envelope: dict[str, Any] = response.json()
        except ValueError:
            raise ClientError(
                f"{self.url} answered HTTP {response.status_code} with something that is not JSON",
                response.status_code,
            ) from None
        if envelope.get("status") != "success":
            raise ClientError(str(envelope.get("message")), response.status_code, envelope)
        return envelope

    def upload(self, path: str, bucket: str, acl: str, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.call("aws.upload", path=path, bucket=bucket, acl=acl, **fields)[
            "data"
        ]
        return data

    def status(
        self, limit: int | None = None, offset: int | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.call(
            "aws.status", limit=limit, offset=offset, state=state
        )["data"]
        return data

    def get(self, upload_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.call("aws.status", id=upload_id)["data"]
        return data

    def cancel(self, upload_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.call("aws.cancel", id=upload_id)["data"]
        return data

    def retry(self, upload_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.call("aws.retry", id=upload_id)["data"]
        return data

    def wait(
        self, upload_id: int, timeout: float = 3600.0, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the upload ends (completed, failed or cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(upload_id)
            if record["state"] in ("completed", "failed", "cancelled"):
                return record
            if time.monotonic() > deadline:
                raise ClientError(f"Upload {upload_id} did not finish within {timeout:.0f} s")
            time.sleep(interval)
