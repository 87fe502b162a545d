"""Settings, built from an environment mapping in one place."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vod2s3.bandwidth.timetable import Timetable, parse_timetable
from vod2s3.errors import BadRequest, ConfigurationError

MiB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigurationError(f"{name} must be at least {minimum}, got {raw}")
    return value


# The settings whose value may instead be read from the file ``VOD2S3_<NAME>_FILE`` names.
SECRET_FILE_SETTINGS = frozenset({"database_url", "operator_token", "metrics_token"})


def _secret(env: Mapping[str, str], name: str) -> str:
    """``name``'s value, or the content of the file ``name``_FILE names: a container's
    secrets arrive as files (compose's and Kubernetes' ``secrets``), which keeps them out of
    the environment that ``ps e`` and ``inspect`` show. Setting both is refused, as the
    operator cannot have meant both."""
    file_name = f"{name}_FILE"
    given = env.get(name, "").strip()
    path = env.get(file_name, "").strip()
    if not path:
        return given
    if given:
        raise ConfigurationError(f"Set {name} or {file_name}, not both: unset one of them")
    try:
        # Its permissions are the operator's, as for any mounted secret: the container
        # runtime decides who may read it, not this process.
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigurationError(
            f"{file_name}: cannot read {path} ({reason}): give the path of a readable file "
            f"holding {name}'s value, or set {name} instead"
        ) from None
    if not value:
        raise ConfigurationError(f"{file_name}: {path} is empty: write {name}'s value in it")
    return value


PAYLOAD_SIGNING_MODES = ("auto", "on", "off")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# How failures of the ScaleEngine endpoints are answered: "native" statuses (400, 401, ...)
# or "200" with the same envelope, for clients that read the body only on success.
FAILURE_STATUSES = ("native", "200")
# The check every body carries (s3/integrity.py), or "auto": the cheapest the store verifies.
INTEGRITY_MODES = ("auto", "crc32c", "md5", "sha256")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _networks(
    raw: str, name: str = "VOD2S3_CALLBACK_ALLOW"
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{name}: {item!r} is not a network such as 127.0.0.0/8"
            ) from None
    return tuple(nets)


MIN_OPERATOR_TOKEN = 16


def _operator_token(env: Mapping[str, str], name: str = "VOD2S3_OPERATOR_TOKEN") -> str:
    token = _secret(env, name)
    if token and len(token) < MIN_OPERATOR_TOKEN:
        # The dashboard accepts it in a query parameter: it must not be guessable.
        raise ConfigurationError(
            f"{name} must be at least {MIN_OPERATOR_TOKEN} characters "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def masked_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# 100 years: more is a typing mistake, and "now minus" it would fall off the calendar.
MAX_RETENTION_DAYS = 36_500


def _retention_days(env: Mapping[str, str], name: str = "VOD2S3_RETENTION_DAYS") -> int:
    raw = env.get(name, "").strip()
    if raw and not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(
            f"{name} must be a whole number of days, 0 or more (0 keeps finished uploads "
            f"forever), got {raw!r}"
        )
    days = int(raw or 0)
    if days > MAX_RETENTION_DAYS:
        raise ConfigurationError(f"{name} must be at most {MAX_RETENTION_DAYS} days, got {days}")
    return days


def _master_key_file(env: Mapping[str, str]) -> Path | None:
    raw = env.get("VOD2S3_MASTER_KEY_FILE", "").strip()
    if not raw:
        return None
    if env.get("VOD2S3_MASTER_KEY", "").strip():
        raise ConfigurationError(
            "Set VOD2S3_MASTER_KEY or VOD2S3_MASTER_KEY_FILE, not both: which keys would "
            "decrypt the stored secrets is then ambiguous"
        )
    if not Path(raw).is_absolute():
        raise ConfigurationError(f"VOD2S3_MASTER_KEY_FILE must be an absolute path, got {raw!r}")
    return Path(raw)


NO_CAP = Timetable.constant(None)


def _max_bandwidth(env: Mapping[str, str], name: str = "VOD2S3_MAX_BANDWIDTH") -> Timetable:
    raw = env.get(name, "").strip()
    if not raw:
        return NO_CAP
    try:
        return parse_timetable(raw, name)
    except BadRequest as error:
        raise ConfigurationError(error.message) from None


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///vod2s3.db"
    storage_root: Path = Path("storage")
    master_key: str = ""
    # A file of master keys, newest first (one per line): what `vod2s3 keys rotate` changes
    # while the service runs. Default: the file beside a SQLite database.
    master_key_file: Path | None = None
    callback_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default_factory=tuple
    )
    timestamp_window: int = 300
    max_body_bytes: int = 64 * 1024
    # worker
    # Uploads a worker runs at once. Many, since a request in flight costs one send block,
    # not a part buffer: the sending pool's adaptive limit, not this, bounds the requests
    # in flight, and with few uploads at once many small files could not fill a long link
    # (docs/benchmarks.md, "The emulated WAN, again").
    worker_concurrency: int = 16
    lease_seconds: int = 60
    max_attempts: int = 5
    retry_base_delay: float = 2.0
    retry_max_delay: float = 300.0
    poll_interval: float = 1.0
    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
    # A cap on one upload's requests in flight; 0: none but s3_max_connections_per_upload.
    parts_in_flight: int = 0
    # Ignored since parts are sent from the file a block at a time (docs/decisions.md): it
    # bounded a worker's part buffers. Still read, so configurations that set it start.
    parts_in_memory: int = 3
    # What each worker process may send per second, in all: a rate or a timetable
    # (vod2s3/bandwidth/timetable.py), shared between the accounts sending.
    max_bandwidth: Timetable = NO_CAP
    # Requests a worker process sends at once, in all and for one upload: the limit starts at
    # a few and grows while throughput rises, up to these (s3/concurrency.py).
    s3_max_connections: int = 64
    s3_max_connections_per_upload: int = 64
    # Seconds a connection may go without the store taking any of a request body's bytes
    # before it is abandoned and the part sent again (s3/client.py).
    stall_seconds: float = 30.0
    s3_connect_timeout: float = 10.0
    s3_read_timeout: float = 60.0
    # SHA-256 signing of every body byte: "auto" signs over plain http only (over https the
    # integrity check the store verifies plus TLS already cover the bytes).
    payload_signing: str = "auto"
    integrity: str = "auto"  # INTEGRITY_MODES; an account may choose its own
    log_format: str = "text"  # or "json": one object per line (vod2s3/logs.py)
    log_level: str = "info"  # LOG_LEVELS; uvicorn's loggers follow it too
    # Bearer token of the read-only /dashboard; empty = the dashboard is off (404).
    operator_token: str = field(default="", repr=False)
    # Bearer token /metrics asks for (the API's and the worker's); empty = open.
    metrics_token: str = field(default="", repr=False)
    callback_timeout: float = 10.0
    # Abuse limits (docs/security.md).
    rate_limit: float = 20.0  # requests per second per account and API process; 0 = off
    rate_burst: int = 40
    max_queued_per_account: int = 10_000  # queued + uploading uploads; 0 = no cap
    body_timeout: float = 30.0  # seconds a client has to send its whole request body
    # Before any signature is checked: requests per second from one client address (an
    # IPv6 client's /64), per API process; 0 = off.
    address_rate_limit: float = 50.0
    address_rate_burst: int = 100
    # Reverse proxies whose X-Forwarded-For names the client (nginx in front, say). Any
    # other peer is the client itself, whatever header it sends.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default_factory=tuple
    )
    failure_http_status: str = "native"  # or "200" (FAILURE_STATUSES)
    header_timeout: float = 10.0  # seconds a connection has to send a request's headers
    connections_per_address: int = 64  # open at once from one client (trusted proxies: any)
    max_connections: int = 4096  # open at once in all; also kept below the file limit
    # A regular file with more than one hard link may be another user's file linked into
    # this folder: refused unless the operator says customers cannot make links there.
    allow_hard_links: bool = False
    # Finished uploads (and their callback deliveries) are deleted by the workers this many
    # days after they finished; 0 keeps them forever (the default: deleting records a
    # customer may still ask aws.status for is the operator's decision).
    retention_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        default = cls()
        return cls(
            database_url=_secret(env, "VOD2S3_DATABASE_URL") or default.database_url,
            storage_root=Path(env.get("VOD2S3_STORAGE_ROOT", "").strip() or default.storage_root),
            master_key=env.get("VOD2S3_MASTER_KEY", "").strip(),
            master_key_file=_master_key_file(env),
            callback_allow=_networks(env.get("VOD2S3_CALLBACK_ALLOW", "")),
            timestamp_window=_int(env, "VOD2S3_TIMESTAMP_WINDOW", default.timestamp_window, 1),
            max_body_bytes=_int(env, "VOD2S3_MAX_BODY_BYTES", default.max_body_bytes, 1024),
            worker_concurrency=_int(
                env, "VOD2S3_WORKER_CONCURRENCY", default.worker_concurrency, 1
            ),
            lease_seconds=_int(env, "VOD2S3_LEASE_SECONDS", default.lease_seconds, 5),
            max_attempts=_int(env, "VOD2S3_MAX_ATTEMPTS", default.max_attempts, 1),
            retry_base_delay=_float(env, "VOD2S3_RETRY_BASE_DELAY", default.retry_base_delay, 0.0),
            retry_max_delay=_float(env, "VOD2S3_RETRY_MAX_DELAY", default.retry_max_delay, 0.0),
            poll_interval=_float(env, "VOD2S3_POLL_INTERVAL", default.poll_interval, 0.01),
            s3_connect_timeout=_float(
                env, "VOD2S3_S3_CONNECT_TIMEOUT", default.s3_connect_timeout, 0.1
            ),
            s3_read_timeout=_float(env, "VOD2S3_S3_READ_TIMEOUT", default.s3_read_timeout, 0.1),
            stall_seconds=_float(env, "VOD2S3_STALL_SECONDS", default.stall_seconds, 0.5),
            payload_signing=_choice(
                env, "VOD2S3_PAYLOAD_SIGNING", default.payload_signing, PAYLOAD_SIGNING_MODES
            ),
            multipart_threshold=_int(
                env, "VOD2S3_MULTIPART_THRESHOLD", default.multipart_threshold, 5 * MiB
            ),
            part_size=_int(env, "VOD2S3_PART_SIZE", default.part_size, 5 * MiB),
            parts_in_flight=_int(env, "VOD2S3_PARTS_IN_FLIGHT", default.parts_in_flight, 0),
            s3_max_connections=_int(
                env, "VOD2S3_S3_MAX_CONNECTIONS", default.s3_max_connections, 1
            ),
            s3_max_connections_per_upload=_int(
                env,
                "VOD2S3_S3_MAX_CONNECTIONS_PER_UPLOAD",
                default.s3_max_connections_per_upload,
                1,
            ),
            parts_in_memory=_int(env, "VOD2S3_PARTS_IN_MEMORY", default.parts_in_memory, 1),
            max_bandwidth=_max_bandwidth(env),
            integrity=_choice(env, "VOD2S3_INTEGRITY", default.integrity, INTEGRITY_MODES),
            log_format=_choice(env, "VOD2S3_LOG_FORMAT", default.log_format, LOG_FORMATS),
            log_level=_choice(env, "VOD2S3_LOG_LEVEL", default.log_level, LOG_LEVELS),
            operator_token=_operator_token(env),
            metrics_token=_operator_token(env, "VOD2S3_METRICS_TOKEN"),
            rate_limit=_float(env, "VOD2S3_RATE_LIMIT", default.rate_limit, 0.0),
            rate_burst=_int(env, "VOD2S3_RATE_BURST", default.rate_burst, 1),
            max_queued_per_account=_int(
                env, "VOD2S3_MAX_QUEUED_PER_ACCOUNT", default.max_queued_per_account, 0
            ),
            body_timeout=_float(env, "VOD2S3_BODY_TIMEOUT", default.body_timeout, 0.1),
            address_rate_limit=_float(
                env, "VOD2S3_ADDRESS_RATE_LIMIT", default.address_rate_limit, 0.0
            ),
            address_rate_burst=_int(
                env, "VOD2S3_ADDRESS_RATE_BURST", default.address_rate_burst, 1
            ),
            trusted_proxies=_networks(
                env.get("VOD2S3_TRUSTED_PROXIES", ""), "VOD2S3_TRUSTED_PROXIES"
            ),
            failure_http_status=_choice(
                env, "VOD2S3_FAILURE_HTTP_STATUS", default.failure_http_status, FAILURE_STATUSES
            ),
            header_timeout=_float(env, "VOD2S3_HEADER_TIMEOUT", default.header_timeout, 0.1),
            connections_per_address=_int(
                env, "VOD2S3_CONNECTIONS_PER_ADDRESS", default.connections_per_address, 1
            ),
            max_connections=_int(env, "VOD2S3_MAX_CONNECTIONS", default.max_connections, 16),
            callback_timeout=_float(env, "VOD2S3_CALLBACK_TIMEOUT", default.callback_timeout, 0.1),
            allow_hard_links=_choice(env, "VOD2S3_ALLOW_HARD_LINKS", "no", ("yes", "no")) == "yes",
            retention_days=_retention_days(env),
        )

    def masked(self) -> dict[str, object]:
        """Every setting by name, the secrets masked: the master key, the operator and
        metrics tokens, and the database password (for a repr, which ends up in logs and
        tracebacks, and for `vod2s3 config show`)."""
        shown: dict[str, object] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        shown["database_url"] = masked_url(self.database_url)
        for secret in ("master_key", "operator_token", "metrics_token"):
            shown[secret] = "***" if getattr(self, secret) else ""
        return shown

    def __repr__(self) -> str:
        shown = self.masked()
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items())) + ")"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for another database or an in-memory one."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1]
        if not path or path == ":memory:":
            return None
        return Path(path)
