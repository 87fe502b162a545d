"""`vod2s3 accounts check`: will this account's uploads work? Each row tries one thing
against the real endpoint, as a worker would do it, and says what to do when it fails.
Everything written is deleted again and every multipart upload begun is aborted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from vod2s3.s3.classify import classify
from vod2s3.s3.confirm import confirmed
from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.integrity import ALGORITHMS, MODES, Mode
from vod2s3.s3.model import ObjectSpec, S3Target
from vod2s3.s3.probe import ProbeFailed, verifies
from vod2s3.s3.region import reported_region

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

PREFIX = ".vod2s3-check/"
PASS, WARN, FAIL = "pass", "warn", "fail"
# The first row: what every upload needs (the key, the secret, the bucket, the permission).
PUT = "credentials, bucket, PutObject"
_SSE: tuple[Literal["AES256", "aws:kms"], ...] = ("AES256", "aws:kms")


@dataclass(frozen=True)
class CheckRow:
    check: str
    result: str  # PASS, WARN or FAIL
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _failure(error: BaseException, bucket: str) -> str:
    return classify(error, bucket=bucket).message


class AccountCheck:
    """``client_for(signing)`` builds the account's client with payload signing "on",
    "off" or "" (the account's own setting)."""

    def __init__(
        self, target: S3Target, bucket: str, client_for: Callable[[str], S3Client]
    ) -> None:
        self.target = target
        self.bucket = bucket
        self.client_for = client_for
        self.client = client_for("")
        self.rows: list[CheckRow] = []

    def run(self) -> list[CheckRow]:
        # Each step needs the one before: stop at the first that fails.
        for step in (self._put, self._region, self._multipart):
            if not step():
                return self.rows
        self._acl()
        self._integrity()
        for mode in _SSE:
            self._encryption(mode)
        return self.rows

    def _add(self, check: str, result: str, detail: str) -> bool:
        self.rows.append(CheckRow(check, result, detail))
        return result != FAIL

    def _key(self) -> str:
        return f"{PREFIX}{uuid.uuid4().hex}"

    def _region(self) -> bool:
        region = reported_region(self.client, self.bucket)
        if region is None:
            return self._add("region", WARN, "the store does not report a bucket's region")
        if region != self.target.region:
            return self._add(
                "region",
                FAIL,
                f"the bucket is in {region}, the account says {self.target.region}: "
                f"set --region {region} with `vod2s3 accounts set-aws`",
            )
        return self._add("region", PASS, region)

    def _put(self) -> bool:
        key = self._key()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"vod2s3 check")
        except (ClientError, BotoCoreError) as error:
            return self._add(PUT, FAIL, _failure(error, self.bucket))
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            return self._add(
                PUT,
                WARN,
                f"written, but could not be deleted ({error}): delete s3://{self.bucket}/{key}",
            )
        return self._add(PUT, PASS, f"a small object was written to '{self.bucket}' and deleted")

    def _multipart(self) -> bool:
        key = self._key()
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            return self._add("multipart and abort", FAIL, _failure(error, self.bucket))
        upload_id = upload["UploadId"]
        try:
            self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part"
            )
        except (ClientError, BotoCoreError) as error:
            self._abort(key, upload_id)
            return self._add("multipart and abort", FAIL, _failure(error, self.bucket))
        return self._abort(key, upload_id)

    def _abort(self, key: str, upload_id: str) -> bool:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as error:
            return self._add(
                "multipart and abort",
                FAIL,
                f"AbortMultipartUpload failed ({error}): cancelled uploads would leave their "
                "parts (and their cost) behind; allow s3:AbortMultipartUpload",
            )
        return self._add("multipart and abort", PASS, "a part was sent and the upload aborted")

    def _acl(self) -> None:
        key = self._key()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"acl", ACL="public-read")
        except (ClientError, BotoCoreError) as error:
            self._add(
                "ACL public-read",
                WARN,
                f"refused: {_failure(error, self.bucket)} (acl private uploads still work)",
            )
            return
        self._delete(key)
        self._add("ACL public-read", PASS, "allowed")

    def _integrity(self) -> None:
        verified: list[str] = []
        for mode in MODES:
            try:
                if verifies(
                    self.client_for("on" if mode == "sha256" else "off"), mode, self.bucket
                ):
                    verified.append(ALGORITHMS[mode])
            except ProbeFailed as error:
                self._add(f"integrity {ALGORITHMS[mode]}", WARN, f"could not probe: {error}")
        first: Mode | None = next((mode for mode in MODES if ALGORITHMS[mode] in verified), None)
        if first is None:
            self._add(
                "integrity",
                WARN,
                "the store verifies none of CRC32C, Content-MD5, signed payloads: records "
                'will say "verified_by": "nobody"',
            )
            return
        self._add(
            "integrity",
            PASS,
            f"verified: {', '.join(verified)}; auto sends {ALGORITHMS[first]}",
        )

    def _encryption(self, mode: Literal["AES256", "aws:kms"]) -> None:
        spec = ObjectSpec(
            bucket=self.bucket,
            key=self._key(),
            acl="",
            metadata={},
            content_type="",
            server_side_encryption=mode,
        )
        name = "SSE-S3 (AES256)" if mode == "AES256" else "SSE-KMS (aws:kms)"
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=spec.key, Body=b"sse", ServerSideEncryption=mode
            )
        except (ClientError, BotoCoreError) as error:
            self._add(name, WARN, f"refused: {_failure(error, self.bucket)}")
            return
        try:
            # What a worker does after each upload; it deletes the object when not applied.
            confirmed(self.client, spec, answer)
        except AttemptFailure as failure:
            self._add(
                name,
                WARN,
                f"accepted but not applied: uploads asking for it fail with {failure.code} "
                f"({failure.message})",
            )
            return
        self._delete(spec.key)
        self._add(name, PASS, "applied and confirmed")

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            self._add("clean-up", WARN, f"delete s3://{self.bucket}/{key} by hand: {error}")
