"""vod2s3: copy video files from storage volumes into customers' S3 buckets."""

__version__ = "0.1.0"
