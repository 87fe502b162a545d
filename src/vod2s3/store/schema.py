"""The tables. One ``uploads`` row is both the customer-visible record and the job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

NEVER_CLAIMED = datetime(1970, 1, 1)
UPLOAD_STATES = ("queued", "uploading", "completed", "failed", "cancelled")
CALLBACK_STATES = ("none", "pending", "delivered", "failed")
DELIVERY_STATES = ("pending", "delivered", "failed")

# Stable constraint names let Alembic migrations refer to them on every dialect.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cdn", Integer, nullable=False, unique=True),
    Column("storage_user", String(64), nullable=False),
    Column("api_key", String(64), nullable=False, unique=True),
    # Secrets are Fernet tokens (encrypted with the master key), never plain text.
    Column("secret_enc", Text, nullable=False),
    Column("previous_secret_enc", Text, nullable=True),
    Column("previous_secret_expires", DateTime, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("aws_access_key_id", String(128), nullable=False, default=""),
    Column("aws_secret_access_key_enc", Text, nullable=False, default=""),
    Column("aws_region", String(32), nullable=False, default="us-east-1"),
    Column("aws_endpoint_url", String(2048), nullable=False, default=""),
    # Empty list: any bucket the account's own AWS credentials can write to.
    Column("allowed_buckets", JSON, nullable=False, default=list),
    Column("created", DateTime, nullable=False),
    # When a worker last claimed one of the account's uploads: claims go to the account
    # that waited longest, so one account's 10,000 queued files cannot starve the others.
    # Never NULL (the epoch until the first claim), so one plain index gives that order on
    # every database.
    Column("last_claimed", DateTime, nullable=False, default=NEVER_CLAIMED),
    # How failures are answered: NULL follows VOD2S3_FAILURE_HTTP_STATUS; "200" answers
    # them with HTTP 200 for clients that read the body only on success; "native".
    Column("failure_status", String(8), nullable=True),
    # The check sent with every body: NULL follows VOD2S3_INTEGRITY (s3/integrity.py).
    Column("integrity", String(8), nullable=True),
    # Endpoint options (migration 0011); NULL = the default: "auto" addressing, the system's
    # trust store, VOD2S3_PAYLOAD_SIGNING.
    Column("addressing_style", String(8), nullable=True),
    Column("ca_bundle", Text, nullable=True),
    Column("payload_signing", String(8), nullable=True),
    # Bytes per second this account may send from each worker process (migration 0013);
    # NULL: no cap of its own (vod2s3/bandwidth/).
    Column("max_bandwidth", BigInteger, nullable=True),
    Index("ix_accounts_last_claimed_id", "last_claimed", "id"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("cdn_id", Integer, nullable=False),
    # The signature of the aws.upload request that created the row: a replayed request
    # hits the unique constraint and is answered with this row.
    Column("request_signature", String(128), nullable=False),
    Column("path", Text, nullable=False),
    Column("volume", String(64), nullable=False),
    Column("bucket", String(63), nullable=False),
    Column("destination_path", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("acl", String(16), nullable=False),
    Column("callback", Text, nullable=False, default=""),
    # content_type, cache_control, storage_class, server_side_encryption, sse_kms_key_id,
    # request_payer: everything S3 needs beyond the original fields.
    Column("options", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("status", Integer, nullable=False, default=0),
    Column("error_code", String(64), nullable=False, default=""),
    Column("results", JSON, nullable=False),
    Column("checksum", String(128), nullable=False, default=""),
    # Which check the bytes carried and who verified it (worker/integrity.py); NULL until
    # the upload completes.
    Column("integrity", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("bytes_total", BigInteger, nullable=False, default=0),
    Column("bytes_uploaded", BigInteger, nullable=False, default=0),
    Column("callback_state", String(16), nullable=False, default="none"),
    Column("callback_attempts", Integer, nullable=False, default=0),
    # The last delivery attempt's HTTP status (0: no answer) and what went wrong.
    Column("callback_status", Integer, nullable=False, default=0),
    Column("callback_error", Text, nullable=False, default=""),
    Column("created", DateTime, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("started", DateTime, nullable=True),
    Column("finished", DateTime, nullable=True),
    # The job side: when a queued row may be claimed, and who holds it until when.
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", DateTime, nullable=True),
    # The fencing token: a generation that every claim raises by one. A holder's writes and
    # its checks before destructive S3 actions name the token it was given, so a worker
    # that lost the upload (even to a later claim of its own) is refused.
    Column("lease_token", BigInteger, nullable=False, default=0, server_default="0"),
    # The worker (workers.id) holding the lease: a dead worker's uploads are taken over
    # without waiting for their leases to run out.
    Column("worker_id", Integer, nullable=True),
    # Resume state of a multipart upload: its id, the part size it was cut with, and the
    # source file's mtime when it began (a changed file cannot be resumed).
    Column("multipart_upload_id", Text, nullable=True),
    Column("part_size", BigInteger, nullable=True),
    Column("source_mtime_ns", BigInteger, nullable=True),
    UniqueConstraint("account_id", "request_signature"),
    CheckConstraint(_in("state", UPLOAD_STATES), name="state"),
    CheckConstraint(_in("callback_state", CALLBACK_STATES), name="callback_state"),
    CheckConstraint("acl IN ('private', 'public-read')", name="acl"),
    Index("ix_uploads_account_id_id", "account_id", "id"),
    Index("ix_uploads_state_next_attempt_at", "state", "next_attempt_at"),
    # An account's due uploads in order (the claim), and its counts by state (the queue cap).
    Index(
        "ix_uploads_account_id_state_next_attempt_at",
        "account_id",
        "state",
        "next_attempt_at",
        "id",
    ),
    # Only accounts with queued uploads appear here, so the fair-turn claim walks the
    # accounts that have work, however many idle ones exist.
    Index(
        "ix_uploads_queued_account_id",
        "account_id",
        "next_attempt_at",
        "id",
        postgresql_where=text("state = 'queued'"),
        sqlite_where=text("state = 'queued'"),
    ),
    Index(
        "ix_uploads_uploading_worker_id",
        "worker_id",
        postgresql_where=text("state = 'uploading'"),
        sqlite_where=text("state = 'uploading'"),
    ),
    # The purge of finished uploads walks them oldest first (migration 0012).
    Index("ix_uploads_finished", "finished"),
)

# The parts of the current multipart upload that S3 has confirmed, written as each finishes,
# so that a worker taking over re-sends only what was in flight.
upload_parts = Table(
    "upload_parts",
    metadata,
    Column("upload_id", Integer, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
    Column("part_number", Integer, primary_key=True),
    Column("etag", String(128), nullable=False),
    Column("checksum", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
)

# The callback outbox: a row is written in the same transaction that finishes an upload, so
# an outcome is never without its callback, and delivery (claimed with a lease, retried on a
# schedule) cannot lose one when a process dies.
callback_deliveries = Table(
    "callback_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upload_id", Integer, ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Integer, nullable=False),
    # Sent as a header; the same on every retry so receivers can drop duplicates.
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    # The JSON body, fixed at the first attempt so every retry sends the same bytes.
    Column("body", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", DateTime, nullable=True),
    Column("last_status", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("created", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
    Index("ix_callback_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    # An upload's deliveries: `uploads show`, and deleting them with it (migration 0012).
    Index("ix_callback_deliveries_upload_id", "upload_id"),
)

# Every worker process that ever started: what it serves, and whether it is alive. On
# PostgreSQL a live worker also holds a session advisory lock keyed on its id; a free lock
# means its connection is gone, and its uploads are taken over at once.
workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    # The process's start time (clock ticks since boot, from /proc): a PID that a new
    # process has reused does not look like the worker that had it.
    Column("process_started", BigInteger, nullable=False, default=0, server_default="0"),
    Column("volumes", JSON, nullable=False),
    Column("version", String(32), nullable=False),
    Column("started", DateTime, nullable=False),
    Column("last_heartbeat", DateTime, nullable=False),
    Column("stopped", DateTime, nullable=True),
    # "stopped" (its own shutdown) or "dead" (found gone by another worker).
    Column("stop_reason", String(32), nullable=False, default="", server_default=""),
    # What the worker sends, as of its last heartbeat (vod2s3.bandwidth.report, migration
    # 0013): the dashboard runs in another process and learns the rates from here.
    Column("sending", JSON, nullable=True),
    Index("ix_workers_stopped", "stopped"),
)

# The first answer to each signed aws.cancel and aws.retry: a replay of the same signed
# request, within the timestamp window, is answered with it and changes nothing. Rows older
# than the window can never be asked for again and are purged.
command_answers = Table(
    "command_answers",
    metadata,
    Column("account_id", Integer, primary_key=True),
    Column("signature", String(128), primary_key=True),
    Column("command", String(32), nullable=False),
    Column("status", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=True),
    Column("created", DateTime, nullable=False),
    # The failure's envelope code (NULL for a success, and for answers from before 0009).
    Column("code", String(4), nullable=True),
    Index("ix_command_answers_created", "created"),
)
