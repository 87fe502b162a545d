"""Customer accounts: API keys and secrets (encrypted at rest) and their AWS settings."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, String, and_, bindparam, exc, insert, select, update

from vod2s3.bandwidth import format_rate, parse_rate
from vod2s3.clock import Clock
from vod2s3.config import FAILURE_STATUSES, INTEGRITY_MODES, PAYLOAD_SIGNING_MODES
from vod2s3.crypto import SecretBox
from vod2s3.errors import BadRequest, Conflict, NotFound
from vod2s3.store.db import transaction
from vod2s3.store.schema import accounts, uploads

STORAGE_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ALLOW_LIST_ENTRY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
API_KEY_ALPHABET = string.ascii_uppercase + string.digits
DEFAULT_GRACE = timedelta(hours=24)
# What a disabled account's queued uploads say while they wait (docs/operator-guide.md).
WAITING_WHILE_DISABLED = (
    "Waiting: the account is disabled; the upload starts when the operator enables it again"
)


# Looked up on every request and every upload: built once (see store/uploads.py).
_BY_ID = select(accounts).where(accounts.c.id == bindparam("by_id", type_=Integer()))
_BY_API_KEY = select(accounts).where(accounts.c.api_key == bindparam("by_api_key", type_=String()))


@dataclass(frozen=True)
class Account:
    id: int
    cdn: int
    storage_user: str
    api_key: str
    disabled: bool
    aws_access_key_id: str
    aws_region: str
    aws_endpoint_url: str
    allowed_buckets: tuple[str, ...]
    created: datetime
    # "200" or "native": how this account's failures are answered; None follows the
    # service's VOD2S3_FAILURE_HTTP_STATUS.
    failure_status: str | None
    # The check sent with every body ("auto", "crc32c", "md5", "sha256"); None follows
    # VOD2S3_INTEGRITY.
    integrity: str | None
    # Endpoint options; None is the default ("auto" addressing, the system's trust store,
    # VOD2S3_PAYLOAD_SIGNING).
    addressing_style: str | None
    ca_bundle: str | None
    payload_signing: str | None
    # Bytes per second the account may send from each worker process; None: no own cap.
    max_bandwidth: int | None
    # Encrypted; decrypt only where needed, through the methods below.
    _secret_enc: str
    _previous_secret_enc: str | None
    _previous_secret_expires: datetime | None
    _aws_secret_enc: str

    def __repr__(self) -> str:
        return f"Account(cdn={self.cdn}, storage_user={self.storage_user!r})"

    def api_secrets(self, box: SecretBox, now: datetime) -> list[str]:
        """The secrets a request may be signed with: the current one, and the previous one
        while its grace period lasts."""
        valid = [box.decrypt(self._secret_enc)]
        expires = self._previous_secret_expires
        if self._previous_secret_enc and expires is not None and now < expires:
            valid.append(box.decrypt(self._previous_secret_enc))
        return valid

    def aws_secret_access_key(self, box: SecretBox) -> str:
        return box.decrypt(self._aws_secret_enc) if self._aws_secret_enc else ""

    @property
    def has_aws_credentials(self) -> bool:
        return bool(self.aws_access_key_id and self._aws_secret_enc)

    def may_use_bucket(self, bucket: str) -> bool:
        return not self.allowed_buckets or bucket in self.allowed_buckets

    def public_view(self) -> dict[str, Any]:
        """What `accounts list` shows: no secret of any kind."""
        return {
            "cdn": self.cdn,
            "storage_user": self.storage_user,
            "api_key": self.api_key,
            "disabled": self.disabled,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_region": self.aws_region,
            "aws_endpoint_url": self.aws_endpoint_url,
            "buckets": list(self.allowed_buckets),
            "failure_status": self.failure_status,
            "integrity": self.integrity,
            "addressing_style": self.addressing_style,
            "ca_bundle": self.ca_bundle,
            "payload_signing": self.payload_signing,
            "max_bandwidth": format_rate(self.max_bandwidth),
            "created": self.created.strftime("%Y-%m-%d %H:%M:%S"),
        }


ADDRESSING_STYLES = ("auto", "path", "virtual")
# "Leave this option as it is" for set_endpoint_options (None means: back to the default).
UNCHANGED = "\0unchanged"


def _one_of(what: str, value: str | None, choices: tuple[str, ...]) -> None:
    """An account setting is one of ``choices``, or None (the service's default)."""
    if value not in (*choices, None):
        raise BadRequest(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def _ca_bundle(path: str) -> str:
    """An absolute path to a readable PEM file with a certificate in it."""
    file = Path(path)
    if not file.is_absolute():
        raise BadRequest(f"--ca-bundle must be an absolute path, got {path!r}")
    try:
        text = file.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise BadRequest(f"--ca-bundle {path}: {error.strerror or error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise BadRequest(f"--ca-bundle {path} holds no PEM certificate")
    return str(file)


@dataclass(frozen=True)
class IssuedCredentials:
    cdn: int
    storage_user: str
    api_key: str
    secret: str


def _from_row(row: Any) -> Account:
    return Account(
        id=row.id,
        cdn=row.cdn,
        storage_user=row.storage_user,
        api_key=row.api_key,
        disabled=bool(row.disabled),
        aws_access_key_id=row.aws_access_key_id,
        aws_region=row.aws_region,
        aws_endpoint_url=row.aws_endpoint_url,
        allowed_buckets=tuple(row.allowed_buckets or ()),
        created=row.created,
        failure_status=row.failure_status,
        integrity=row.integrity,
        addressing_style=row.addressing_style,
        ca_bundle=row.ca_bundle,
        payload_signing=row.payload_signing,
        max_bandwidth=row.max_bandwidth,
        _secret_enc=row.secret_enc,
        _previous_secret_enc=row.previous_secret_enc,
        _previous_secret_expires=row.previous_secret_expires,
        _aws_secret_enc=row.aws_secret_access_key_enc,
    )


def new_api_key() -> str:
    return "".join(secrets.choice(API_KEY_ALPHABET) for _ in range(32))


def new_secret() -> str:
    return secrets.token_hex(32)


def validate_bucket_name(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None when it is."""
    if not BUCKET_RE.match(bucket):
        return (
            "a bucket name is 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        return "a bucket name may not contain '..' or look like an IP address"
    if bucket.startswith(RESERVED_BUCKET_PREFIXES) or bucket.endswith(RESERVED_BUCKET_SUFFIXES):
        return "a bucket name may not use the prefixes or suffixes AWS reserves"
    return None


def _storage_user(storage_user: str) -> str:
    if not STORAGE_USER_RE.match(storage_user):
        raise BadRequest(
            f"Storage user {storage_user!r} is not a folder name: use letters, digits, "
            "'.', '_' and '-'"
        )
    return storage_user


def _allowed_buckets(buckets: list[str]) -> list[str]:
    for bucket in buckets:
        # Only the characters are checked here: the allow-list is matched exactly, and
        # aws.upload checks the full S3 naming rules of the bucket it is asked for.
        if not ALLOW_LIST_ENTRY_RE.match(bucket):
            raise BadRequest(
                f"Bucket {bucket!r} is not a bucket name: use letters, digits, '.', '-'"
            )
    return buckets


class AccountStore:
    def __init__(self, engine: Engine, box: SecretBox, clock: Clock) -> None:
        self._engine = engine
        self._box = box
        self._clock = clock

    def create(
        self,
        cdn: int,
        storage_user: str,
        api_key: str | None = None,
        secret: str | None = None,
    ) -> IssuedCredentials:
        if cdn <= 0:
            raise BadRequest("--cdn must be a positive whole number")
        _storage_user(storage_user)
        api_key = api_key or new_api_key()
        secret = secret or new_secret()
        try:
            with transaction(self._engine) as conn:
                conn.execute(
                    insert(accounts).values(
                        cdn=cdn,
                        storage_user=storage_user,
                        api_key=api_key,
                        secret_enc=self._box.encrypt(secret),
                        disabled=False,
                        aws_access_key_id="",
                        aws_secret_access_key_enc="",
                        aws_region="us-east-1",
                        aws_endpoint_url="",
                        allowed_buckets=[],
                        created=self._clock.now(),
                    )
                )
        except exc.IntegrityError:
            raise Conflict(f"An account with cdn {cdn} (or that API key) exists already") from None
        return IssuedCredentials(cdn, storage_user, api_key, secret)

    def get(self, cdn: int) -> Account:
        with transaction(self._engine) as conn:
            row = conn.execute(select(accounts).where(accounts.c.cdn == cdn)).first()
        if row is None:
            raise NotFound(f"No account with cdn {cdn}")
        return _from_row(row)

    def get_by_id(self, account_id: int) -> Account:
        with transaction(self._engine) as conn:
            row = conn.execute(_BY_ID, {"by_id": account_id}).first()
        if row is None:
            raise NotFound(f"No account with id {account_id}")
        return _from_row(row)

    def find_by_api_key(self, api_key: str) -> Account | None:
        with transaction(self._engine) as conn:
            row = conn.execute(_BY_API_KEY, {"by_api_key": api_key}).first()
        return None if row is None else _from_row(row)

    def all(self) -> list[Account]:
        with transaction(self._engine) as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.cdn)).all()
        return [_from_row(row) for row in rows]

    def set_aws(
        self,
        cdn: int,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        endpoint_url: str = "",
        buckets: list[str] | None = None,
    ) -> Account:
        _allowed_buckets(buckets or [])
        if endpoint_url and not re.match(r"^https?://[^\s/]+", endpoint_url):
            raise BadRequest("--endpoint-url must be an http:// or https:// URL")
        if not access_key_id or not secret_access_key:
            raise BadRequest("--access-key-id and --secret-access-key must not be empty")
        values: dict[str, Any] = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key_enc": self._box.encrypt(secret_access_key),
            "aws_region": region,
            "aws_endpoint_url": endpoint_url.rstrip("/"),
        }
        if buckets is not None:
            values["allowed_buckets"] = buckets
        self._update(cdn, values)
        return self.get(cdn)

    def rotate_secret(self, cdn: int, grace: timedelta = DEFAULT_GRACE) -> str:
        """A new secret; the old one stays valid for ``grace``."""
        account = self.get(cdn)
        secret = new_secret()
        self._update(
            cdn,
            {
                "secret_enc": self._box.encrypt(secret),
                "previous_secret_enc": account._secret_enc,
                "previous_secret_expires": self._clock.now() + grace,
            },
        )
        return secret

    def set_disabled(self, cdn: int, disabled: bool) -> int:
        """Disable or enable an account; its queued uploads say that they wait, or go back
        to "Queued", in the same transaction. Returns how many queued uploads that touched.
        Workers skip a disabled account's uploads when they claim, and stop the running
        ones at their next part (worker/job.py)."""
        account = self.get(cdn)
        queued = and_(uploads.c.account_id == account.id, uploads.c.state == "queued")
        with transaction(self._engine) as conn:
            conn.execute(
                update(accounts).where(accounts.c.id == account.id).values(disabled=disabled)
            )
            if disabled:
                waiting = update(uploads).where(queued).values(message=WAITING_WHILE_DISABLED)
            else:
                waiting = (
                    update(uploads)
                    .where(queued, uploads.c.message == WAITING_WHILE_DISABLED)
                    .values(message="Queued")
                )
            return int(conn.execute(waiting).rowcount)

    def set_storage(
        self, cdn: int, storage_user: str | None = None, buckets: list[str] | None = None
    ) -> Account:
        """Change the storage user and/or the allowed buckets (an empty list: any bucket),
        without touching the AWS credentials."""
        values: dict[str, Any] = {}
        if storage_user is not None:
            values["storage_user"] = _storage_user(storage_user)
        if buckets is not None:
            values["allowed_buckets"] = _allowed_buckets(buckets)
        if values:
            self._update(cdn, values)
        return self.get(cdn)

    def set_failure_status(self, cdn: int, failure_status: str | None) -> None:
        """ "200", "native", or None to follow the service's setting."""
        _one_of("failure status", failure_status, FAILURE_STATUSES)
        self._update(cdn, {"failure_status": failure_status})

    def set_endpoint_options(
        self,
        cdn: int,
        *,
        addressing_style: str | None = UNCHANGED,
        ca_bundle: str | None = UNCHANGED,
        payload_signing: str | None = UNCHANGED,
    ) -> None:
        """Change the options given; None resets one to its default."""
        values: dict[str, Any] = {}
        if addressing_style != UNCHANGED:
            _one_of("addressing style", addressing_style, ADDRESSING_STYLES)
            values["addressing_style"] = addressing_style
        if ca_bundle != UNCHANGED:
            values["ca_bundle"] = None if ca_bundle is None else _ca_bundle(ca_bundle)
        if payload_signing != UNCHANGED:
            _one_of("payload signing", payload_signing, PAYLOAD_SIGNING_MODES)
            values["payload_signing"] = payload_signing
        if values:
            self._update(cdn, values)

    def set_integrity(self, cdn: int, integrity: str | None) -> None:
        """A check for this account's uploads, "auto", or None to follow the service's."""
        _one_of("integrity", integrity, INTEGRITY_MODES)
        self._update(cdn, {"integrity": integrity})

    def set_max_bandwidth(self, cdn: int, rate: str) -> int | None:
        """The account's own cap, as a rate (``20M``) or ``off``; returns it in bytes/s.
        Running workers apply it within seconds (vod2s3/bandwidth/uplink.py)."""
        limit = parse_rate(rate, "--max-bandwidth")
        self._update(cdn, {"max_bandwidth": limit})
        return limit

    def _update(self, cdn: int, values: dict[str, Any]) -> None:
        with transaction(self._engine) as conn:
            result = conn.execute(update(accounts).where(accounts.c.cdn == cdn).values(**values))
        if result.rowcount == 0:
            raise NotFound(f"No account with cdn {cdn}")
