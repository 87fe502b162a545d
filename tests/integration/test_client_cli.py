"""The customer's command line as customers run it: `vod2s3 client …` and `vod2s3-client …`,
real subprocesses against a running API, in the terminals they have (80 columns, 16
colours)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service import RunningService, wait_until
from tests.unit.test_packaging import SERVER_ONLY
from vod2s3.accounts import IssuedCredentials

BIN = Path(sys.executable).parent
VOD2S3 = str(BIN / "vod2s3")
LONG_FOLDER = "2024/holidays/summer-in-the-mountains-with-the-whole-family"
LONG_NAME = "family-trip-day-three-final-edit-v2.mp4"


def client_env(service: RunningService, issued: IssuedCredentials, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOD2S3_", "COLUMNS"))}
    env.update(
        VOD2S3_URL=service.url,
        VOD2S3_CDN=str(issued.cdn),
        VOD2S3_API_KEY=issued.api_key,
        VOD2S3_SECRET=issued.secret,
        **extra,
    )
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("script", ["vod2s3", "vod2s3-client"])
def test_client_status_imports_nothing_of_the_server(
    service: RunningService, bucket: str, script: str
) -> None:
    issued = service.add_account(158, "jb")
    service.client(issued).upload(
        service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private"
    )
    status = ["client", "status"] if script == "vod2s3" else ["status"]
    # The console script run by the same interpreter, with every import it makes listed.
    done = run(
        [sys.executable, "-X", "importtime", str(BIN / script), *status],
        client_env(service, issued),
    )
    assert "queued" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "vod2s3.client" in imported  # the listing is there and names what ran
    server = {name for name in imported if name.split(".")[0] in SERVER_ONLY}
    assert not server, sorted(server)
    assert "vod2s3.cli" not in imported


def test_client_status_fits_80_columns(service: RunningService, bucket: str) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    long_path = service.write_source(f"sestore1/jb/{LONG_FOLDER}/{LONG_NAME}", b"video")
    short = api.upload(service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private")["id"]
    service.drain()
    # A bucket that does not exist: the upload fails with a long message that says why.
    failed = api.upload(long_path, "no-such-bucket-for-this-test", "private")["id"]
    service.drain()
    queued = api.upload(long_path, bucket, "public-read")["id"]
    assert api.get(failed)["state"] == "failed"

    done = run([VOD2S3, "client", "status"], client_env(service, issued, COLUMNS="80"))

    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, done.stdout
    # Each upload's first line: its whole id and state, then its path, whose middle alone
    # is gone when it is too long.
    firsts = [line.split() for line in lines[1:] if not line.startswith(" " * 8)]
    starts = {words[0]: words for words in firsts}
    assert starts[str(short)][1:3] == ["completed", "100%"]
    assert starts[str(failed)][1] == "failed"
    assert starts[str(queued)][1] == "queued"
    elided = starts[str(queued)][-1]
    assert elided.startswith("sestore1/jb/")
    assert elided.endswith(LONG_NAME[-10:])
    assert "..." in elided
    # The failure's message is there in full, wrapped, not cut.
    message = api.get(failed)["message"]
    assert len(message) > 40
    assert " ".join(done.stdout.split()).count(" ".join(message.split())) == 1

    wide = run([VOD2S3, "client", "status"], client_env(service, issued, COLUMNS="200"))
    assert f"sestore1/jb/{LONG_FOLDER}/{LONG_NAME}" in wide.stdout


# A terminal that takes escape codes but is not animated (rich then draws the bar once, at
# the end) and announces no more than 16 colours: TERM without "-256color", no COLORTERM.
SIXTEEN_COLOURS = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "TERM": "xterm"}
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def final_bar(output: str, upload_id: int) -> set[tuple[str, str]]:
    """The cells of the bar in the last line drawn for the upload, each (character, the SGR
    codes it is drawn with)."""
    line = [text for text in output.splitlines() if f"upload {upload_id} " in text][-1]
    cells: list[tuple[str, str]] = []
    codes = ""
    for index, piece in enumerate(SGR.split(line)):
        if index % 2:
            codes = piece if piece not in ("", "0") else ""
        else:
            cells.extend((char, codes) for char in piece)
    plain = "".join(char for char, _ in cells)
    # "upload ID STATE BAR BYTES SPEED": the bar is the fourth word.
    bar = plain.split()[3]
    start = plain.index(bar, plain.index(f"upload {upload_id} ") + len(f"upload {upload_id} "))
    return set(cells[start : start + len(bar)])


def follow(
    service: RunningService, issued: IssuedCredentials, path: str, bucket: str, log: Path
) -> subprocess.Popen[bytes]:
    """`vod2s3 client upload PATH --wait` in the 16-colour terminal, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [VOD2S3, "client", "upload", path, "--bucket", bucket, "--acl", "private", "--wait"],
            env=client_env(service, issued, **SIXTEEN_COLOURS),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_finished_bar_is_not_drawn_like_the_empty_track(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    source = service.write_source("sestore1/jb/a.mp4", b"video bytes" * 1000)

    # Cancelled while queued: its last bar is the empty track.
    empty_log = tmp_path / "empty.log"
    following = follow(service, issued, source, bucket, empty_log)
    wait_until(following, empty_log, lambda: len(api.status()) == 1)
    cancelled = api.status()[0]["id"]
    api.cancel(cancelled)
    assert following.wait(timeout=30) == 2  # --wait: an upload that did not complete
    empty = final_bar(empty_log.read_text(), cancelled)

    # Run to completion by a worker while the client follows it: its last bar is full.
    # Another file: the same upload signed in the same second is the same request, which
    # finds the upload it queued (api/once.py), the cancelled one.
    other = service.write_source("sestore1/jb/b.mp4", b"video bytes" * 1000)
    full_log = tmp_path / "full.log"
    following = follow(service, issued, other, bucket, full_log)
    wait_until(following, full_log, lambda: len(api.status()) == 2)
    completed = api.status()[0]["id"]
    assert service.drain() == 1
    assert following.wait(timeout=30) == 0, full_log.read_text()
    full = final_bar(full_log.read_text(), completed)

    assert empty
    assert full
    # Not one cell of the finished bar looks like a cell of the track, in shape or colour.
    assert {char for char, _ in full}.isdisjoint(char for char, _ in empty)
    assert {codes for _, codes in full}.isdisjoint(codes for _, codes in empty)
    # Only the 16 colours were used: no 256-colour or RGB codes.
    for _, codes in full | empty:
        assert all(30 <= int(code) <= 37 or 90 <= int(code) <= 97 for code in codes.split(";"))
