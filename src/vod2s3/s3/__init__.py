"""The S3 uploader: one file into one S3 object. Knows nothing of the store or the API."""

from vod2s3.s3.abort import abort_upload
from vod2s3.s3.classify import classify
from vod2s3.s3.client import make_client
from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.journal import MultipartProgress, NoJournal, SentPart, UploadJournal
from vod2s3.s3.model import ObjectSpec, S3Target, UploadOutcome, UploadTuning
from vod2s3.s3.upload import upload
from vod2s3.s3.urls import object_url

__all__ = [
    "AttemptFailure",
    "MultipartProgress",
    "NoJournal",
    "ObjectSpec",
    "S3Target",
    "SentPart",
    "UploadJournal",
    "UploadOutcome",
    "UploadTuning",
    "abort_upload",
    "classify",
    "make_client",
    "object_url",
    "upload",
]
