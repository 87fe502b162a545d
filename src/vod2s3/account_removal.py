"""``vod2s3 accounts delete``: an account, its records, and what it left on S3.

Refused while the account has queued or running uploads, unless told to cancel them. The
multipart uploads that cancelled uploads left are aborted here, with the account's own
credentials, before the rows that name them are deleted: once the account is gone, the
workers' sweep could no longer reach them, and their parts would cost the customer money.
"""

from __future__ import annotations

from dataclasses import dataclass

from vod2s3.errors import Conflict
from vod2s3.runtime import Runtime
from vod2s3.s3 import abort_upload, make_client
from vod2s3.store.removal import active_uploads, delete_account_rows
from vod2s3.worker.accounts import account_target
from vod2s3.worker.job import object_spec


@dataclass(frozen=True)
class Removal:
    cdn: int
    cancelled: int  # queued or running uploads this call cancelled
    aborted: int  # multipart uploads aborted on S3
    records_deleted: int


def remove_account(runtime: Runtime, cdn: int, cancel_uploads: bool) -> Removal:
    account = runtime.accounts.get(cdn)
    active = active_uploads(runtime.engine, account.id)
    if active and not cancel_uploads:
        raise Conflict(
            f"account cdn {cdn} has {len(active)} queued or running uploads: cancel them "
            "first (vod2s3 uploads cancel ID...), or pass --cancel-uploads"
        )
    # Disabled first: no worker starts one of its uploads while they are being cancelled.
    runtime.accounts.set_disabled(cdn, True)
    records = runtime.uploads
    cancelled = sum(records.cancel(account.id, upload.id)[1] for upload in active)
    aborted: set[tuple[int, str]] = set()
    if account.has_aws_credentials:
        # A running upload's worker, refused at its next part, aborts its multipart upload
        # itself and may do so before the loop below looks: those count as aborted too, as
        # they are gone either way by the time the rows are deleted (the loop ends only
        # when no cancelled upload of the account still names one).
        aborted = {
            (upload.id, upload.multipart_upload_id)
            for upload in active
            if upload.multipart_upload_id is not None
        }
        target = account_target(account, runtime.box)
        settings = runtime.settings
        client = make_client(
            target,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            payload_signing=target.payload_signing or settings.payload_signing,
        )
        journal = runtime.journal
        while batch := journal.abandoned(account_id=account.id):
            for left in batch:
                abort_upload(client, object_spec(left), left.multipart_upload_id)
                journal.forget_abandoned(left.id, left.multipart_upload_id)
                aborted.add((left.id, left.multipart_upload_id))
    deleted = delete_account_rows(runtime.engine, account.id)
    return Removal(cdn, cancelled, len(aborted), deleted)
