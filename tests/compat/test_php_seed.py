"""The PHP example of the original aws.status docs page (shared/seed/aws.status.txt), run with
php-cli against our server with nothing changed but the URL and the keys."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import php_binary
from tests.service import RunningService
from vod2s3.accounts import IssuedCredentials
from vod2s3.contract import RESULT_KEYS

pytestmark = pytest.mark.php

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "aws.status.txt"
ORIGINAL_URL = "'https://api.scaleengine.net/stable/'"
ORIGINAL_API_KEY = "'APX4GKLM0RKQLSP2FBO1ROPKSSW47DZE'"
ORIGINAL_SECRET = "'8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f'"
JSON_MARKER = "\n---JSON---\n"
JSON_TAIL = 'echo "\\n---JSON---\\n" . json_encode($arrResponse);\n'
UPLOAD_PATH = "sestore1/jb/path/to/file.mp4"


def seed_example() -> str:
    """The PHP code of the seed page: from `$request = array(` through the closing `}` of the
    if/else that ends it."""
    if not SEED.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the seed docs page {SEED} is required in CI (CI=true)")
        pytest.skip(f"the seed docs page {SEED} is not here (shared/ beside the repository)")
    text = SEED.read_text(encoding="utf-8")
    start = text.index("$request = array(")
    end = text.index("\nRequest Fields", start)
    code = text[start:end]
    code = code[: code.rindex("}") + 1]
    assert code.rstrip().endswith("print_r($response);\n}")
    return code + "\n"


def replace_once(code: str, old: str, new: str) -> str:
    assert code.count(old) == 1, f"{old!r} is not exactly once in the example"
    return code.replace(old, new)


def php_example(
    url: str,
    issued: IssuedCredentials,
    request_array: str | None = None,
    json_tail: bool = True,
) -> str:
    """The seed example with only the URL and the key literals changed; optionally its
    `$request = array(...);` statement replaced, and the JSON tail appended."""
    code = seed_example()
    code = replace_once(code, ORIGINAL_URL, f"'{url}'")
    code = replace_once(code, ORIGINAL_API_KEY, f"'{issued.api_key}'")
    code = replace_once(code, ORIGINAL_SECRET, f"'{issued.secret}'")
    if request_array is not None:
        original = code[: code.index(");\n") + 3]
        assert original.startswith("$request = array(")
        code = request_array + code[len(original) :]
    if json_tail:
        code += JSON_TAIL
    return "<?php\n" + code


def run_php(script: str, tmp_path: Path, *php_options: str) -> str:
    """``script`` run by php-cli; ``php_options`` are its ``-d name=value`` settings."""
    php = php_binary()
    source = tmp_path / "example.php"
    source.write_text(script, encoding="utf-8")
    done = subprocess.run(
        [php, *php_options, str(source)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"php exited {done.returncode}: {done.stdout}{done.stderr}"
    assert "Failed to connect" not in done.stdout
    return done.stdout


def run_php_json(script: str, tmp_path: Path) -> dict[str, Any]:
    output = run_php(script, tmp_path)
    assert JSON_MARKER in output, output
    printed, tail = output.rsplit(JSON_MARKER, 1)
    assert "An error occured" not in printed, printed
    decoded: dict[str, Any] = json.loads(tail)
    return decoded


def upload_array(api_key: str, bucket: str, metadata: str) -> str:
    # `api_key` is written as the original example writes it: a literal in the array.
    return f"""$request = array(
'command' => 'aws.upload',
'api_key' => '{api_key}',
'timestamp' => time(),
'cdn' => 158,
'path' => '{UPLOAD_PATH}',
'bucket' => '{bucket}',
'acl' => 'private',
'metadata' => {metadata},
'callback' => 'www.mycallbackurl.com/'
);
"""


def status_array(api_key: str, upload_id: int) -> str:
    return f"""$request = array(
'command' => 'aws.status',
'api_key' => '{api_key}',
'timestamp' => time(),
'cdn' => 158,
'limit' => 25, //optional
'offset' => 0,
'id' => {upload_id}
);
"""


def test_seed_example_extracts_as_documented() -> None:
    code = seed_example()
    assert code.startswith("$request = array(\n'command' => 'aws.status',")
    assert "'cdn' => 158," in code
    assert "curl_setopt($ch, CURLOPT_POSTFIELDS, array('json' => $json_request));" in code


def test_original_example_as_is_prints_success(service: RunningService, tmp_path: Path) -> None:
    issued = service.add_account(158, "jb")
    output = run_php(php_example(service.url, issued, json_tail=False), tmp_path)

    assert "[status] => success" in output, output
    assert "[message] => Found AWS Status" in output
    assert "An error occured" not in output


def test_original_example_finds_no_uploads(service: RunningService, tmp_path: Path) -> None:
    issued = service.add_account(158, "jb")
    response = run_php_json(php_example(service.url, issued), tmp_path)

    assert response["status"] == "success", response
    assert response["message"] == "Found AWS Status"
    assert response["data"] == []
    assert isinstance(response["handle_time"], float | int)


def test_wrong_secret_in_example_is_refused(service: RunningService, tmp_path: Path) -> None:
    issued = service.add_account(158, "jb")
    wrong = IssuedCredentials(issued.cdn, issued.storage_user, issued.api_key, "0" * 64)
    response = run_php_json(php_example(service.url, wrong), tmp_path)

    assert response["status"] == "failure"
    assert response["data"] is None or response["data"] in ([], {})


def test_php_upload_then_status_of_its_id(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    data = b"php video " * 500
    service.write_source(UPLOAD_PATH, data)

    # PHP's json_encode writes "/" as "\/" and "é" as "\u00e9": the server must verify that.
    upload = upload_array(issued.api_key, bucket, "array('title' => 'Vidéo d\\'été')")
    queued = run_php_json(php_example(service.url, issued, upload), tmp_path)

    assert queued["status"] == "success", queued
    assert queued["message"] == "AWS Upload Queued"
    record = queued["data"]
    assert record["path"] == UPLOAD_PATH
    assert record["destination_path"] == "path/to/file.mp4"
    assert record["metadata"] == {"title": "Vidéo d'été"}
    assert record["callback"] == "www.mycallbackurl.com/"
    assert record["message"] == "Queued"
    assert record["cdn_id"] == 158
    assert service.drain() == 1

    status = status_array(issued.api_key, record["id"])
    response = run_php_json(php_example(service.url, issued, status), tmp_path)

    assert response["status"] == "success", response
    done = response["data"]
    assert isinstance(done, dict)
    assert done["id"] == record["id"]
    assert done["message"] == "Successfully Uploaded to AWS"
    assert done["status"] == 200
    assert done["acl"] == "private"
    assert done["metadata"] == {"title": "Vidéo d'été"}
    assert sorted(done["results"]) == sorted(RESULT_KEYS)
    assert len(done["results"]) == 10
    assert done["results"]["Bucket"] == bucket
    assert done["results"]["Key"] == "path/to/file.mp4"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", done["created"])


def test_php_upload_with_empty_metadata_array(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    service.write_source(UPLOAD_PATH, b"empty metadata")

    # json_encode(array()) is "[]", not "{}".
    upload = upload_array(issued.api_key, bucket, "array()")
    queued = run_php_json(php_example(service.url, issued, upload), tmp_path)

    assert queued["status"] == "success", queued
    # json_decode(..., true) turns {} into array(), which json_encode writes back as [].
    assert queued["data"]["metadata"] in ({}, [])
    assert service.drain() == 1
    response = run_php_json(
        php_example(service.url, issued, status_array(issued.api_key, queued["data"]["id"])),
        tmp_path,
    )
    assert response["data"]["message"] == "Successfully Uploaded to AWS"
    assert response["data"]["status"] == 200
