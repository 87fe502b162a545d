"""aws.upload: check a request to copy a file and queue it."""

from __future__ import annotations

from typing import Any

from vod2s3.accounts import validate_bucket_name
from vod2s3.api import upload_fields
from vod2s3.api.context import Call, Services
from vod2s3.api.fields import one_of, optional_str, required_str
from vod2s3.errors import BadRequest, Forbidden, QueueFull, Vod2s3Error
from vod2s3.records import record_view
from vod2s3.storage import resolve_source
from vod2s3.store.records import NewUpload, TooManyActive

MESSAGE = "AWS Upload Queued"


def aws_upload(services: Services, call: Call) -> tuple[str, Any]:
    try:
        new = _checked(services, call)
    except Vod2s3Error:
        # A replay of a request that was queued before is answered with that record, even
        # if the file has gone since: the request was valid when it first arrived.
        existing = services.uploads.find_by_signature(call.account.id, call.signature)
        if existing is not None:
            return MESSAGE, record_view(existing)
        raise
    cap = services.settings.max_queued_per_account
    try:
        row, created = services.uploads.enqueue(new, max_active=cap)
    except TooManyActive:
        raise QueueFull(
            f"This account already has {cap} uploads queued or running, the most allowed: "
            "wait for some to finish, then queue more",
            retry_after=60,
        ) from None
    if created:
        services.queued()
    return MESSAGE, record_view(row)


def _checked(services: Services, call: Call) -> NewUpload:
    """The upload the request asks for, every field and the source file checked."""
    account, obj = call.account, call.obj
    path = required_str(obj, "path")
    bucket = required_str(obj, "bucket")
    acl = one_of(obj, "acl", upload_fields.ACLS, required=True)
    problem = validate_bucket_name(bucket)
    if problem:
        raise BadRequest(f"Field 'bucket' is not a valid bucket name: {problem}")
    if not account.may_use_bucket(bucket):
        raise Forbidden(
            f"Bucket '{bucket}' is not allowed for this account; allowed: "
            + ", ".join(account.allowed_buckets)
        )
    if not account.has_aws_credentials:
        raise Forbidden(
            "This account has no AWS credentials yet: the operator sets them with "
            "`vod2s3 accounts set-aws`"
        )
    destination = optional_str(obj, "destination_path", 4096)
    metadata = upload_fields.metadata(obj.get("metadata"))
    callback = upload_fields.callback_url(obj.get("callback"), services.settings.callback_allow)
    settings = services.settings
    source = resolve_source(
        settings.storage_root, path, account.storage_user, settings.allow_hard_links
    )
    key = upload_fields.object_key(destination, source.relative_path)
    return NewUpload(
        account_id=account.id,
        cdn_id=account.cdn,
        request_signature=call.signature,
        path=path,
        volume=source.volume,
        bucket=bucket,
        destination_path=key,
        metadata=metadata,
        acl=acl,
        callback=callback,
        options=upload_fields.s3_options(obj, key),
        bytes_total=source.size,
    )
