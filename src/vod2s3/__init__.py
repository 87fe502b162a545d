"""vod2s3: copy video files from storage volumes into customers' S3 buckets."""

from importlib import metadata

# The one place the version is written: pyproject.toml and client/pyproject.toml read it
# from here (dynamic version), so the installed metadata always says the same.
__version__ = "0.1.0"


def installed_version() -> str:
    """The version pip installed (the distribution's metadata), or ``__version__`` when
    vod2s3 runs from a source tree that is not installed, or from the light client's
    distribution (named vod2s3-client)."""
    try:
        return metadata.version("vod2s3")
    except metadata.PackageNotFoundError:
        return __version__
