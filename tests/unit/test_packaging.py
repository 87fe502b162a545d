"""The installed service must import without the development-only packages."""

from __future__ import annotations

import subprocess
import sys

DEV_ONLY = ("mypy_boto3_s3", "botocore-stubs", "moto", "pytest", "hypothesis")
MODULES = ("vod2s3.cli", "vod2s3.runtime", "vod2s3.api.app", "vod2s3.worker.loop", "vod2s3.s3")


def test_service_imports_without_dev_dependencies() -> None:
    # A module set to None in sys.modules cannot be imported: as if it were not installed.
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in DEV_ONLY)
    imports = "; ".join(f"import {module}" for module in MODULES)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; {blocked}; {imports}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# The server's dependencies: the customer's client must start, and run, without any of them.
SERVER_ONLY = ("sqlalchemy", "alembic", "boto3", "botocore", "psycopg", "starlette", "uvicorn")
CLIENT_MODULES = ("vod2s3.client", "vod2s3.client_cli", "vod2s3.main")


def test_the_customer_client_imports_nothing_of_the_server() -> None:
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in SERVER_ONLY)
    imports = "; ".join(f"import {module}" for module in CLIENT_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; {blocked}; {imports}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
