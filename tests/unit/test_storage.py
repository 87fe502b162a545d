"""storage.py against real files, symlinks, FIFOs and permissions in a temporary storage root."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vod2s3.config import Settings
from vod2s3.errors import ConfigurationError, SourceError
from vod2s3.storage import (
    MAX_PATH_BYTES,
    SourceFile,
    open_source,
    parse_source_path,
    quote_path,
    resolve_source,
)

NOBODY = 65534


def write(path: Path, data: bytes = b"video bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def refusal(storage_root: Path, path: str, code: str, status: int, user: str = "jb") -> str:
    """Resolve a path that must be refused; check code, status and that nothing leaks."""
    with pytest.raises(SourceError) as caught:
        resolve_source(storage_root, path, user)
    error = caught.value
    assert (error.code, error.http_status) == (code, status), error.message
    assert_safe_message(error.message, path, storage_root)
    return error.message


def assert_safe_message(message: str, path: str, storage_root: Path) -> None:
    assert quote_path(path) in message
    if path.isprintable() and len(path) <= 200:
        assert f"'{path}'" in message
    assert str(storage_root) not in message
    assert str(storage_root.parent) not in message


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def bob_secret(storage_root: Path) -> Path:
    """Another customer's file on the same volume."""
    return write(storage_root / "sestore1" / "bob" / "secret.mp4", b"bob's video")


# --- happy paths ---------------------------------------------------------------------------


def test_nested_file_resolves(storage_root: Path) -> None:
    real = write(storage_root / "sestore1" / "jb" / "path" / "to" / "file.mp4", b"12345")

    source = resolve_source(storage_root, "sestore1/jb/path/to/file.mp4", "jb")

    assert source == SourceFile(
        path="sestore1/jb/path/to/file.mp4",
        volume="sestore1",
        storage_user="jb",
        relative_path="path/to/file.mp4",
        real_path=real.resolve(),
        size=5,
        user_folder=(storage_root / "sestore1" / "jb").resolve(),
    )


@pytest.mark.parametrize(
    "name",
    [
        "vidéo 東京.mp4",
        ".hidden.mp4",
        "my%20video.mp4",
        "100%.mp4",
        "a..b.mp4",
        "...",
        "wait\u2026.mp4",  # HORIZONTAL ELLIPSIS is ordinary punctuation in titles
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467.mp4",  # ZWJ emoji sequence
        "it's here.mp4",
    ],
)
def test_unusual_but_legal_names_resolve(storage_root: Path, name: str) -> None:
    write(storage_root / "sestore1" / "jb" / "dir" / name)

    source = resolve_source(storage_root, f"sestore1/jb/dir/{name}", "jb")

    assert source.relative_path == f"dir/{name}"
    assert source.real_path.name == name


def test_symlink_inside_folder_pointing_inside_is_followed(storage_root: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    target = write(folder / "masters" / "take1.mp4", b"take one")
    (folder / "latest.mp4").symlink_to("masters/take1.mp4")
    (folder / "abs.mp4").symlink_to(target)
    (folder / "sub").mkdir()
    (folder / "sub" / "up.mp4").symlink_to("../../jb/masters/take1.mp4")

    for name in ("latest.mp4", "abs.mp4", "sub/up.mp4"):
        source = resolve_source(storage_root, f"sestore1/jb/{name}", "jb")
        # The object key is what the customer named, not where the link leads.
        assert source.relative_path == name
        assert source.real_path == target.resolve()
        assert source.size == len(b"take one")


def test_symlinked_parent_directory_inside_folder_is_followed(storage_root: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    target = write(folder / "2024" / "march" / "show.mp4")
    (folder / "current").symlink_to("2024/march", target_is_directory=True)

    source = resolve_source(storage_root, "sestore1/jb/current/show.mp4", "jb")

    assert source.real_path == target.resolve()
    fd = open_source(source)
    os.close(fd)


def test_user_folder_symlinked_by_operator(storage_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "disk2" / "jb-data"
    target = write(elsewhere / "clip.mp4", b"clip")
    (storage_root / "sestore2" / "jb").symlink_to(elsewhere, target_is_directory=True)

    source = resolve_source(storage_root, "sestore2/jb/clip.mp4", "jb")

    assert source.real_path == target.resolve()
    fd = open_source(source)
    try:
        assert os.pread(fd, 100, 0) == b"clip"
    finally:
        os.close(fd)


def test_parse_source_path_splits() -> None:
    assert parse_source_path("sestore3/jb/path/to/file.mp4") == (
        "sestore3",
        "jb",
        "path/to/file.mp4",
    )
    assert parse_source_path("sestore3/jb/file.mp4") == ("sestore3", "jb", "file.mp4")


def test_open_source_reads_the_right_bytes(storage_root: Path) -> None:
    data = bytes(range(256)) * 64
    write(storage_root / "sestore1" / "jb" / "a" / "b.mp4", data)
    source = resolve_source(storage_root, "sestore1/jb/a/b.mp4", "jb")

    fd = open_source(source)
    try:
        assert os.pread(fd, 10, 0) == data[:10]
        assert os.pread(fd, 100, 1000) == data[1000:1100]
        assert os.get_blocking(fd)
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


# --- syntax refusals -----------------------------------------------------------------------

SYNTAX_REFUSALS = {
    "empty": "",
    "dotdot segment": "sestore1/jb/../jb/x.mp4",
    "dotdot escaping": "sestore1/jb/a/../../bob/secret.mp4",
    "dotdot only": "../../../etc/passwd",
    "dot segment": "sestore1/./jb/x.mp4",
    "trailing dot": "sestore1/jb/.",
    "absolute": "/sestore1/jb/x.mp4",
    "absolute system": "/etc/passwd",
    "encoded dotdot": "sestore1/jb/%2e%2e/bob/secret.mp4",
    "encoded dotdot upper": "sestore1/jb/%2E%2E/bob/secret.mp4",
    "encoded slash": "sestore1/jb/..%2fbob%2fsecret.mp4",
    "encoded backslash": "sestore1/jb/a%5cb.mp4",
    "double encoded": "sestore1/jb/%252e%252e/x.mp4",
    "overlong utf8": "sestore1/jb/%c0%ae%c0%ae/x.mp4",
    "iis unicode": "sestore1/jb/%u002e%u002e/x.mp4",
    "NUL": "sestore1/jb/x.mp4\x00.txt",
    "SOH": "sestore1/jb/\x01x.mp4",
    "DEL": "sestore1/jb/x\x7f.mp4",
    "newline": "sestore1/jb/x\n.mp4",
    "C1 control": "sestore1/jb/x\x85.mp4",
    "line separator": "sestore1/jb/x\u2028.mp4",
    "bidi override": "sestore1/jb/gpj.\u202emp4",
    "backslash": "sestore1\\jb\\x.mp4",
    "backslash dotdot": "sestore1/jb/..\\..\\bob\\secret.mp4",
    "one dot leader": "sestore1/jb/\u2024\u2024/bob/secret.mp4",
    "one dot leader in name": "sestore1/jb/x\u2024mp4",
    "two dot leader": "sestore1/jb/\u2025/bob/secret.mp4",
    "fullwidth full stop": "sestore1/jb/\uff0e\uff0e/bob/secret.mp4",
    "division slash": "sestore1/jb/..\u2215bob\u2215secret.mp4",
    "fullwidth solidus": "sestore1/jb\uff0f..\uff0fbob/secret.mp4",
    "fraction slash": "sestore1/jb/a\u2044b.mp4",
    "fullwidth reverse solidus": "sestore1/jb/a\uff3cb.mp4",
    "empty segment": "sestore1/jb//x.mp4",
    "empty volume": "/jb/x.mp4",
    "trailing slash": "sestore1/jb/dir/",
    "no file": "sestore1/jb",
    "bare name": "x.mp4",
    "too long": "sestore1/jb/" + "a/" * 506 + "x.mp4",
    "long segment": "sestore1/jb/" + "é" * 128 + ".mp4",
    "lone surrogate": "sestore1/jb/\ud800.mp4",
}


@pytest.mark.parametrize("path", SYNTAX_REFUSALS.values(), ids=SYNTAX_REFUSALS.keys())
def test_syntax_refusals(storage_root: Path, path: str) -> None:
    # The refusal must come from the syntax check even when such a file could exist.
    write(storage_root / "sestore1" / "jb" / "x.mp4")
    message = refusal(storage_root, path, "SourceInvalid", 400)
    with pytest.raises(SourceError) as caught:
        parse_source_path(path)
    assert caught.value.message == message


def test_too_long_boundary(storage_root: Path) -> None:
    prefix = "sestore1/jb/"
    name = "x" * 200 + "/"
    path = prefix + name * ((MAX_PATH_BYTES - len(prefix)) // len(name))
    fits = path + "y" * (MAX_PATH_BYTES - len(path))
    assert len(fits.encode()) == MAX_PATH_BYTES
    write(storage_root / fits)

    assert resolve_source(storage_root, fits, "jb").size > 0
    message = refusal(storage_root, fits + "z", "SourceInvalid", 400)
    assert "1025 bytes" in message


def test_control_characters_are_escaped_in_the_message(storage_root: Path) -> None:
    message = refusal(storage_root, "sestore1/jb/a\x00b\u202e.mp4", "SourceInvalid", 400)
    assert "'sestore1/jb/a\\x00b\\u202e.mp4'" in message
    assert "\x00" not in message
    assert "\u202e" not in message


@pytest.mark.parametrize("value", [None, 42, ["sestore1/jb/x.mp4"], b"sestore1/jb/x.mp4"])
def test_non_string_path(storage_root: Path, value: object) -> None:
    with pytest.raises(SourceError) as caught:
        resolve_source(storage_root, value, "jb")  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.http_status) == ("SourceInvalid", 400)
    assert "must be a string" in caught.value.message
    assert repr(value) in caught.value.message


# --- volume, user and folder refusals ------------------------------------------------------


def test_missing_volume(storage_root: Path) -> None:
    message = refusal(storage_root, "sestore9/jb/x.mp4", "VolumeNotFound", 400)
    assert "'sestore9'" in message


@pytest.mark.parametrize("volume", ["sestore 1", "-sestore1", "_x", "v" * 65, "sestöre1"])
def test_volume_with_invalid_name(storage_root: Path, volume: str) -> None:
    write(storage_root / volume / "jb" / "x.mp4")
    refusal(storage_root, f"{volume}/jb/x.mp4", "VolumeNotFound", 400)


def test_volume_that_is_a_file(storage_root: Path) -> None:
    write(storage_root / "sestore3")
    refusal(storage_root, "sestore3/jb/x.mp4", "VolumeNotFound", 400)


def test_another_users_path(storage_root: Path, bob_secret: Path) -> None:
    message = refusal(storage_root, "sestore1/bob/secret.mp4", "StorageUserMismatch", 403)
    assert "'sestore1/bob/secret.mp4' is not in your storage folder 'jb'" in message


def test_storage_user_is_case_sensitive(storage_root: Path) -> None:
    write(storage_root / "sestore1" / "JB" / "x.mp4")
    refusal(storage_root, "sestore1/JB/x.mp4", "StorageUserMismatch", 403)


def test_missing_user_folder(storage_root: Path) -> None:
    message = refusal(storage_root, "sestore2/jb/x.mp4", "SourceMissing", 400)
    assert "'jb'" in message


# --- containment refusals ------------------------------------------------------------------


def test_symlinked_file_to_another_users_folder(storage_root: Path, bob_secret: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    (folder / "abs.mp4").symlink_to(bob_secret)
    (folder / "rel.mp4").symlink_to("../bob/secret.mp4")

    for name in ("abs.mp4", "rel.mp4"):
        message = refusal(storage_root, f"sestore1/jb/{name}", "PathOutsideFolder", 403)
        assert "bob" not in message


def test_symlinked_file_to_system_file(storage_root: Path) -> None:
    (storage_root / "sestore1" / "jb" / "passwd.mp4").symlink_to("/etc/passwd")
    message = refusal(storage_root, "sestore1/jb/passwd.mp4", "PathOutsideFolder", 403)
    assert "/etc" not in message


def test_symlinked_parent_directory_pointing_outside(storage_root: Path, bob_secret: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    (folder / "bobs").symlink_to(bob_secret.parent, target_is_directory=True)
    (folder / "etc").symlink_to("/etc", target_is_directory=True)
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "up").symlink_to("../../..", target_is_directory=True)

    refusal(storage_root, "sestore1/jb/bobs/secret.mp4", "PathOutsideFolder", 403)
    refusal(storage_root, "sestore1/jb/etc/passwd", "PathOutsideFolder", 403)
    refusal(storage_root, "sestore1/jb/deep/er/up/bob/secret.mp4", "PathOutsideFolder", 403)


def test_dangling_symlink_outside_is_outside_not_missing(storage_root: Path) -> None:
    # Reporting "missing" here would let a customer probe which operator paths exist.
    (storage_root / "sestore1" / "jb" / "probe.mp4").symlink_to("/nonexistent/operator/file")
    refusal(storage_root, "sestore1/jb/probe.mp4", "PathOutsideFolder", 403)


def test_symlink_to_sibling_folder_with_common_prefix(storage_root: Path) -> None:
    # '/…/jb2' starts with the string '/…/jb': containment must compare path components.
    sibling = write(storage_root / "sestore1" / "jb2" / "x.mp4")
    (storage_root / "sestore1" / "jb" / "x.mp4").symlink_to(sibling)
    refusal(storage_root, "sestore1/jb/x.mp4", "PathOutsideFolder", 403)


# --- file refusals -------------------------------------------------------------------------


def test_missing_file(storage_root: Path) -> None:
    refusal(storage_root, "sestore1/jb/nope.mp4", "SourceMissing", 400)
    refusal(storage_root, "sestore1/jb/no/such/dir/x.mp4", "SourceMissing", 400)


def test_file_used_as_folder(storage_root: Path) -> None:
    write(storage_root / "sestore1" / "jb" / "x.mp4")
    refusal(storage_root, "sestore1/jb/x.mp4/y.mp4", "SourceMissing", 400)


def test_dangling_symlink_inside(storage_root: Path) -> None:
    (storage_root / "sestore1" / "jb" / "gone.mp4").symlink_to("deleted.mp4")
    refusal(storage_root, "sestore1/jb/gone.mp4", "SourceMissing", 400)


def test_directory(storage_root: Path) -> None:
    (storage_root / "sestore1" / "jb" / "folder.mp4").mkdir()
    message = refusal(storage_root, "sestore1/jb/folder.mp4", "SourceNotRegular", 400)
    assert "folder" in message


def test_symlink_to_the_user_folder_itself(storage_root: Path) -> None:
    (storage_root / "sestore1" / "jb" / "self").symlink_to(".", target_is_directory=True)
    refusal(storage_root, "sestore1/jb/self", "SourceNotRegular", 400)


def test_fifo(storage_root: Path) -> None:
    os.mkfifo(storage_root / "sestore1" / "jb" / "pipe.mp4")
    message = refusal(storage_root, "sestore1/jb/pipe.mp4", "SourceNotRegular", 400)
    assert "named pipe" in message


def test_symlink_loop(storage_root: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    (folder / "a.mp4").symlink_to("b.mp4")
    (folder / "b.mp4").symlink_to("a.mp4")
    refusal(storage_root, "sestore1/jb/a.mp4", "SourceNotRegular", 400)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the body as 'nobody' when the tests run as root, who can read a chmod 000 file."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A storage root 'nobody' can traverse (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="vod2s3-storage-"))
    try:
        base.chmod(0o755)
        root = base / "storage"
        (root / "sestore1" / "jb").mkdir(parents=True)
        for directory in (root, root / "sestore1", root / "sestore1" / "jb"):
            directory.chmod(0o755)
        yield root
    finally:
        # Top-down, so each locked folder is opened up before os.walk tries to list it.
        for walked, dirs, _ in os.walk(base):
            for name in dirs:
                (Path(walked) / name).chmod(0o755)
        shutil.rmtree(base)


def test_unreadable_file(world_readable_root: Path) -> None:
    root = world_readable_root
    folder = root / "sestore1" / "jb"
    write(folder / "locked.mp4").chmod(0o000)
    write(folder / "open.mp4").chmod(0o644)
    private = folder / "private"
    write(private / "x.mp4").chmod(0o644)
    private.chmod(0o000)

    with unprivileged():
        assert resolve_source(root, "sestore1/jb/open.mp4", "jb").size > 0
        refusal(root, "sestore1/jb/locked.mp4", "SourceUnreadable", 400)
        refusal(root, "sestore1/jb/private/x.mp4", "SourceUnreadable", 400)


def test_unreadable_volume_is_the_operators_problem(world_readable_root: Path) -> None:
    root = world_readable_root
    write(root / "sestore1" / "jb" / "x.mp4")
    (root / "sestore1").chmod(0o000)

    with unprivileged():
        message = refusal(root, "sestore1/jb/x.mp4", "StorageUnavailable", 503)
    assert "operator" in message


# --- open_source: the time-of-check to time-of-use race ------------------------------------


def test_race_parent_directory_swapped_for_symlink(storage_root: Path, bob_secret: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    write(folder / "uploads" / "secret.mp4", b"jb's own video")
    source = resolve_source(storage_root, "sestore1/jb/uploads/secret.mp4", "jb")

    (folder / "uploads").rename(folder / "uploads.old")
    (folder / "uploads").symlink_to(bob_secret.parent, target_is_directory=True)
    before = open_fds()

    with pytest.raises(SourceError) as caught:
        open_source(source)

    assert (caught.value.code, caught.value.http_status) == ("PathOutsideFolder", 403)
    assert_safe_message(caught.value.message, source.path, storage_root)
    assert open_fds() == before


def test_race_deep_parent_swapped_for_symlink(storage_root: Path, tmp_path: Path) -> None:
    folder = storage_root / "sestore1" / "jb"
    write(folder / "a" / "b" / "c" / "x.mp4")
    write(tmp_path / "outside" / "c" / "x.mp4", b"operator secret")
    source = resolve_source(storage_root, "sestore1/jb/a/b/c/x.mp4", "jb")

    shutil.rmtree(folder / "a" / "b")
    (folder / "a" / "b").symlink_to(tmp_path / "outside", target_is_directory=True)

    with pytest.raises(SourceError) as caught:
        open_source(source)
    assert caught.value.code == "PathOutsideFolder"


def test_race_file_swapped_for_symlink(storage_root: Path, bob_secret: Path) -> None:
    real = write(storage_root / "sestore1" / "jb" / "x.mp4")
    source = resolve_source(storage_root, "sestore1/jb/x.mp4", "jb")

    real.unlink()
    real.symlink_to(bob_secret)
    before = open_fds()

    with pytest.raises(SourceError) as caught:
        open_source(source)
    assert (caught.value.code, caught.value.http_status) == ("PathOutsideFolder", 403)
    assert open_fds() == before


def test_race_file_swapped_for_fifo(storage_root: Path) -> None:
    real = write(storage_root / "sestore1" / "jb" / "x.mp4")
    source = resolve_source(storage_root, "sestore1/jb/x.mp4", "jb")

    real.unlink()
    os.mkfifo(real)
    before = open_fds()

    with pytest.raises(SourceError) as caught:
        open_source(source)
    assert caught.value.code == "SourceNotRegular"
    assert open_fds() == before


def test_race_file_deleted(storage_root: Path) -> None:
    real = write(storage_root / "sestore1" / "jb" / "x.mp4")
    source = resolve_source(storage_root, "sestore1/jb/x.mp4", "jb")
    real.unlink()

    with pytest.raises(SourceError) as caught:
        open_source(source)
    assert (caught.value.code, caught.value.http_status) == ("SourceMissing", 400)


def test_open_source_without_user_folder_still_refuses_swapped_file(
    storage_root: Path, bob_secret: Path
) -> None:
    real = write(storage_root / "sestore1" / "jb" / "x.mp4")
    source = resolve_source(storage_root, "sestore1/jb/x.mp4", "jb")
    by_hand = SourceFile(
        path=source.path,
        volume=source.volume,
        storage_user=source.storage_user,
        relative_path=source.relative_path,
        real_path=source.real_path,
        size=source.size,
    )
    os.close(open_source(by_hand))

    real.unlink()
    real.symlink_to(bob_secret)
    with pytest.raises(SourceError) as caught:
        open_source(by_hand)
    assert caught.value.code == "PathOutsideFolder"


# --- property: whatever the path, the answer is a file inside the folder or a clean refusal ---

_PIECES = st.sampled_from(
    ["x.mp4", "sub", "..", ".", "", "/", "%2e", "%2f", "\\", "\u2024", "\uff0f", "\x00", "é",
     "in", "out", "loop", "self", "jb", "bob", "secret.mp4", "東京"]
)  # fmt: skip


@pytest.fixture
def maze(storage_root: Path, bob_secret: Path) -> Path:
    folder = storage_root / "sestore1" / "jb"
    write(folder / "x.mp4")
    write(folder / "sub" / "x.mp4")
    (folder / "in").symlink_to("sub", target_is_directory=True)
    (folder / "out").symlink_to("../bob", target_is_directory=True)
    (folder / "loop").symlink_to("loop")
    (folder / "self").symlink_to(".", target_is_directory=True)
    return storage_root


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(_PIECES, max_size=8))
def test_any_path_is_inside_or_cleanly_refused(maze: Path, pieces: list[str]) -> None:
    path = "sestore1/jb/" + "/".join(pieces)
    folder = (maze / "sestore1" / "jb").resolve()
    try:
        source = resolve_source(maze, path, "jb")
    except SourceError as error:
        assert_safe_message(error.message, path, maze)
        return
    assert source.real_path.is_relative_to(folder)
    fd = open_source(source)
    try:
        assert os.pread(fd, 100, 0) == b"video bytes"
    finally:
        os.close(fd)


def test_a_hard_linked_file_is_refused_unless_the_operator_allows_links(
    storage_root: Path, bob_secret: Path
) -> None:
    linked = storage_root / "sestore1" / "jb" / "linked.mp4"
    linked.parent.mkdir(parents=True, exist_ok=True)
    linked.hardlink_to(bob_secret)
    message = refusal(storage_root, "sestore1/jb/linked.mp4", "SourceHardLinked", 403)
    assert "2 hard links" in message
    allowed = resolve_source(storage_root, "sestore1/jb/linked.mp4", "jb", allow_hard_links=True)
    fd = open_source(allowed)  # and the worker's open agrees
    os.close(fd)


def test_the_hard_link_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).allow_hard_links is False
    assert Settings.from_env({"VOD2S3_ALLOW_HARD_LINKS": "yes"}).allow_hard_links is True
    with pytest.raises(ConfigurationError, match="VOD2S3_ALLOW_HARD_LINKS"):
        Settings.from_env({"VOD2S3_ALLOW_HARD_LINKS": "maybe"})
