"""Resolve and open the source file of an upload without leaving the customer's folder.

A customer names a file as ``<volume>/<storage user>/<path in the user's folder>``. Everything
here treats that string as hostile: it is checked for syntax first, then resolved against the
storage root, and finally opened one directory at a time with ``O_NOFOLLOW`` so that a symlink
swapped in after the checks cannot redirect the open outside the folder.

Messages quote the customer's path and never the operator's absolute paths: they travel back to
the client verbatim.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from vod2s3.errors import SourceError

MAX_PATH_BYTES = 1024
# Linux NAME_MAX; a longer segment can never name a file, so say so before touching the disk.
MAX_SEGMENT_BYTES = 255
_QUOTE_MAX_CHARS = 200

_EXAMPLE = "sestore3/jb/path/to/file.mp4"
_FORMAT = f"'<volume>/<storage user>/<path in your folder>', e.g. '{_EXAMPLE}'"

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Bidi embeddings, overrides and isolates only serve to make a name display differently from what
# it is (CVE-2021-42574, "Trojan Source"); other format characters such as ZWJ are legitimate in
# emoji and Indic or Persian names, so they are allowed.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Characters that look like '.', '/' or '\' to a human or to a careless normaliser. NFKC maps
# some of them to ASCII (U+FF0E, U+FF0F, U+2024) and others not at all (U+2215, U+2044), so an
# explicit list is needed on top of the NFKC check below.
_LOOKALIKES = frozenset(
    "\u2024\u2025\ufe52\uff0e"  # dot leaders, small and fullwidth full stop
    "\u2044\u2215\u2571\u29f8\uff0f"  # fraction, division, box diagonal, big, fullwidth '/'
    "\u2216\u2572\u29f5\u29f9\ufe68\uff3c"  # the same shapes for '\\'
)

# We never URL-decode, so '%2e%2e' is just an odd file name to us, but other software in the
# chain (a proxy, an S3 console, a customer's script) might decode it; a name built like that is
# an attack signal. Covers single and double encoding, overlong UTF-8 and IIS-style %u escapes.
_ENCODED_SEPARATOR = re.compile(
    r"%(?:25)*(?:2e|2f|5c"
    r"|c0%(?:25)*(?:ae|af)|c1%(?:25)*9c|e0%(?:25)*80%(?:25)*(?:ae|af)"
    r"|u(?:002e|002f|005c|2215|2044|ff0e|ff0f|ff3c))",
    re.IGNORECASE,
)

# Linux and macOS only: these flags are the guard, so their absence must fail loudly at import
# rather than silently degrade to following symlinks.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK so that a FIFO swapped in after the checks cannot hang the open; it is cleared again
# once fstat has shown a regular file.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK

_PROC_FD = Path("/proc/self/fd")

# Failures of the storage itself (a dead NFS mount, a disk error): not the customer's doing, and
# worth retrying later, unlike a missing or unreadable file.
_STORAGE_DOWN = frozenset(
    getattr(errno, name)
    for name in ("EIO", "ESTALE", "ETIMEDOUT", "ENOTCONN", "EHOSTDOWN", "EHOSTUNREACH", "ENODEV")
    if hasattr(errno, name)
)


@dataclass(frozen=True)
class SourceFile:
    path: str
    volume: str
    storage_user: str
    relative_path: str
    real_path: Path
    size: int
    # Not in the original contract: open_source needs the resolved user folder to re-walk from,
    # and cannot recompute it without the storage root.
    user_folder: Path | None = field(default=None, repr=False)
    # Whether a file with more than one hard link may be sent (VOD2S3_ALLOW_HARD_LINKS).
    hard_links_allowed: bool = field(default=False, repr=False)


def quote_path(path: str) -> str:
    """The customer's path in single quotes, safe to put in a message, a log line or a header.

    Unprintable characters are escaped so a NUL or a bidi override cannot corrupt what a human
    reads; very long paths are cut so one request cannot produce a megabyte of message.
    """
    shown = path[:_QUOTE_MAX_CHARS]
    escaped = "".join(ch if ch.isprintable() else _escape(ch) for ch in shown)
    return f"'{escaped}…'" if len(path) > _QUOTE_MAX_CHARS else f"'{escaped}'"


def control_character(text: str) -> str | None:
    """The first character of ``text`` that no name should hold, escaped for a message:
    control characters, line and paragraph separators, and bidirectional overrides (which
    make a name read differently from what it is). None when there is none."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            return _escape(ch)
    return None


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _invalid(message: str) -> SourceError:
    return SourceError(message, code="SourceInvalid", http_status=400)


def parse_source_path(path: str) -> tuple[str, str, str]:
    """Split into (volume, storage_user, relative_path) with syntax checks only.

    Raises SourceError(code="SourceInvalid", http_status=400).
    """
    if not isinstance(path, str):
        shown = repr(path)[:_QUOTE_MAX_CHARS]
        raise _invalid(
            f"Field 'path' must be a string such as '{_EXAMPLE}', got {type(path).__name__} {shown}"
        )
    if not path:
        raise _invalid(f"Field 'path' is empty (''); give the file as {_FORMAT}")
    quoted = quote_path(path)
    _check_characters(path, quoted)
    _check_encoded_separators(path, quoted)
    segments = path.split("/")
    _check_segments(segments, quoted)
    if len(segments) < 3:
        raise _invalid(
            f"Path {quoted} does not name a file inside a storage folder; give it as {_FORMAT}"
        )
    return segments[0], segments[1], "/".join(segments[2:])


def _check_characters(path: str, quoted: str) -> None:
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\ud800") has no UTF-8 form, so no file can have that name.
        raise _invalid(
            f"Path {quoted} is not valid Unicode (it holds an unpaired surrogate); "
            "send the file name as UTF-8 text"
        ) from None
    if size > MAX_PATH_BYTES:
        raise _invalid(
            f"Path {quoted} is {size} bytes long; paths may be at most {MAX_PATH_BYTES} bytes "
            "of UTF-8: move or rename the file to shorten it"
        )
    bad = control_character(path)
    if bad is not None:
        raise _invalid(
            f"Path {quoted} contains the control character {bad}; "
            "rename the file without control characters and send its path again"
        )
    if path.startswith("/"):
        raise _invalid(
            f"Path {quoted} starts with '/'; give it relative to the storage, as {_FORMAT}"
        )
    if "\\" in path:
        raise _invalid(
            f"Path {quoted} contains a backslash; separate folders with '/' and rename any "
            "file or folder whose name holds a '\\'"
        )
    for ch in path:
        if ch in _LOOKALIKES or (not ch.isascii() and _nfkc_separator(ch)):
            raise _invalid(
                f"Path {quoted} contains {_escape(ch)} ({unicodedata.name(ch, 'unnamed')}), "
                "which looks like '.', '/' or '\\'; rename the file or folder to use plain "
                "characters and separate folders with '/'"
            )


def _nfkc_separator(ch: str) -> bool:
    normal = unicodedata.normalize("NFKC", ch)
    return "/" in normal or "\\" in normal


def _check_encoded_separators(path: str, quoted: str) -> None:
    match = _ENCODED_SEPARATOR.search(path)
    if match is not None:
        raise _invalid(
            f"Path {quoted} contains '{match.group(0)}', a URL-encoded '.', '/' or '\\'. Paths "
            "are used exactly as given and never URL-decoded: send the real characters, or "
            "rename the file if '%' is part of its name"
        )


def _check_segments(segments: list[str], quoted: str) -> None:
    for segment in segments:
        if not segment:
            raise _invalid(
                f"Path {quoted} has an empty folder name ('//' or a trailing '/'); "
                f"give the file as {_FORMAT}"
            )
        # NFKC turns e.g. U+2025 TWO DOT LEADER into '..'; the explicit list above already refuses
        # the known ones, this catches any other character that normalises to a dot segment.
        if segment in (".", "..") or unicodedata.normalize("NFKC", segment) in (".", ".."):
            raise _invalid(
                f"Path {quoted} contains a '.' or '..' segment; name the file by its path "
                f"inside your folder without '.' or '..', as {_FORMAT}"
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _invalid(
                f"Path {quoted} has a file or folder name longer than {MAX_SEGMENT_BYTES} bytes; "
                "no file can have such a name: check the path"
            )


def resolve_source(
    storage_root: Path, path: str, storage_user: str, allow_hard_links: bool = False
) -> SourceFile:
    """Check the customer's source path (SPEC §3.1) and resolve it to a real, readable file.

    Checks, in order: syntax (SourceInvalid), volume (VolumeNotFound), storage user
    (StorageUserMismatch), user folder (SourceMissing), containment after following symlinks
    (PathOutsideFolder), existence (SourceMissing), file type (SourceNotRegular), readability
    (SourceUnreadable). A storage that is itself unreadable or down (operator side) raises
    StorageUnavailable, 503.
    """
    volume, user, relative = parse_source_path(path)
    quoted = quote_path(path)
    volume_dir = _volume_dir(storage_root, volume, quoted)
    if user != storage_user:
        raise SourceError(
            f"{quoted} is not in your storage folder '{storage_user}'; give a path of the form "
            f"'<volume>/{storage_user}/<path in your folder>'",
            code="StorageUserMismatch",
            http_status=403,
        )
    folder = _user_folder(volume_dir, volume, user, quoted)
    # Non-strict on purpose: containment is decided before existence, so a dangling symlink
    # pointing outside is refused as outside, not reported as missing (which would let a
    # customer probe which of the operator's paths exist).
    real = Path(os.path.realpath(folder / relative))
    if not real.is_relative_to(folder):
        raise _outside(quoted)
    st = _stat_source(real, quoted)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(quoted, st.st_mode)
    fd = _open_inside(folder, real, quoted, allow_hard_links)
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return SourceFile(
        path=path,
        volume=volume,
        storage_user=user,
        relative_path=relative,
        real_path=real,
        size=size,
        user_folder=folder,
        hard_links_allowed=allow_hard_links,
    )


def _volume_dir(storage_root: Path, volume: str, quoted: str) -> Path:
    volume_dir = storage_root / volume
    if _VOLUME_NAME.fullmatch(volume) is None or not _is_directory(volume_dir, volume, quoted):
        raise SourceError(
            f"Volume '{volume}' in path {quoted} does not exist; check the volume part of the "
            f"path (the 'sestore3' in '{_EXAMPLE}')",
            code="VolumeNotFound",
            http_status=400,
        )
    return volume_dir


def _user_folder(volume_dir: Path, volume: str, user: str, quoted: str) -> Path:
    candidate = volume_dir / user
    if not _is_directory(candidate, volume, quoted):
        raise SourceError(
            f"Your storage folder '{user}' does not exist on volume '{volume}' (path {quoted}); "
            "check the volume part of the path, or ask the operator to create the folder",
            code="SourceMissing",
            http_status=400,
        )
    # The operator may have made the user folder a symlink (e.g. to another disk): containment
    # is judged against where it really is.
    try:
        return candidate.resolve(strict=True)
    except OSError:
        raise _storage_unavailable(volume, quoted) from None


def _is_directory(path: Path, volume: str, quoted: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
            return False
        # Permissions or a dead mount above the customer's folder are the operator's to fix.
        raise _storage_unavailable(volume, quoted) from None


def _storage_unavailable(volume: str, quoted: str) -> SourceError:
    return SourceError(
        f"Volume '{volume}' cannot be read by the upload service right now (path {quoted}); "
        "this is a problem on the server, not in your request: try again later or tell the "
        "operator",
        code="StorageUnavailable",
        http_status=503,
    )


def _stat_source(real: Path, quoted: str) -> os.stat_result:
    try:
        return os.stat(real)
    except OSError as exc:
        raise _os_error(exc, quoted) from None


def _os_error(exc: OSError, quoted: str) -> SourceError:
    """Translate an OSError into a customer message; its filename (an operator path) is dropped."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return SourceError(
            f"File {quoted} does not exist; check the spelling (names are case-sensitive) "
            "and that the file has finished uploading to the storage",
            code="SourceMissing",
            http_status=400,
        )
    if exc.errno == errno.ELOOP:
        return SourceError(
            f"Path {quoted} is a loop of symbolic links; point the link at a file in your folder",
            code="SourceNotRegular",
            http_status=400,
        )
    if exc.errno == errno.ENAMETOOLONG:
        return _invalid(f"Path {quoted} resolves to a name too long for the storage; shorten it")
    if exc.errno in _STORAGE_DOWN:
        return SourceError(
            f"File {quoted} cannot be read right now ({os.strerror(exc.errno or 0)}); this is a "
            "problem on the server, not in your request: try again later or tell the operator",
            code="StorageUnavailable",
            http_status=503,
        )
    return SourceError(
        f"File {quoted} cannot be read by the upload service ({os.strerror(exc.errno or 0)}); "
        "make the file and its folders readable (e.g. chmod a+r on the file, a+x on its folders)",
        code="SourceUnreadable",
        http_status=400,
    )


def _outside(quoted: str) -> SourceError:
    return SourceError(
        f"Path {quoted} leads outside your storage folder (a symbolic link points elsewhere); "
        "upload only files stored inside your own folder, or replace the link with the file",
        code="PathOutsideFolder",
        http_status=403,
    )


def _not_regular(quoted: str, mode: int) -> SourceError:
    return SourceError(
        f"Path {quoted} is {_kind(mode)}, not a regular file; give the path of a file",
        code="SourceNotRegular",
        http_status=400,
    )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def open_source(source: SourceFile) -> int:
    """Open the checked source for reading and return an OS file descriptor (caller closes it).

    The file is reached from the resolved user folder one component at a time with O_NOFOLLOW,
    so a file or parent folder swapped for a symlink after :func:`resolve_source` is refused
    (PathOutsideFolder, 403) instead of followed. The caller should resolve again right before
    opening: a legitimate in-folder symlink created after the first resolve is refused too.
    """
    # A SourceFile built by hand (not by resolve_source) has no user folder: then only the
    # file's own directory is trusted, which still stops a swapped final component.
    folder = source.user_folder or source.real_path.parent
    return _open_inside(
        folder, source.real_path, quote_path(source.path), source.hard_links_allowed
    )


def _open_inside(folder: Path, real: Path, quoted: str, allow_hard_links: bool = False) -> int:
    try:
        parts = real.relative_to(folder).parts
    except ValueError:
        raise _outside(quoted) from None
    if not parts:
        raise _not_regular(quoted, stat.S_IFDIR)
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, quoted) from None
    try:
        for name in parts[:-1]:
            child = _step(dir_fd, name, _DIR_FLAGS, quoted)
            parent, dir_fd = dir_fd, child
            os.close(parent)
        fd = _step(dir_fd, parts[-1], _FILE_FLAGS, quoted)
    finally:
        os.close(dir_fd)
    try:
        _check_opened(fd, folder, quoted, allow_hard_links)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step(dir_fd: int, name: str, flags: int, quoted: str) -> int:
    """Open name below dir_fd without following a symlink there."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and _is_symlink(name, dir_fd):
            raise _outside(quoted) from None
        raise _os_error(exc, quoted) from None


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _check_opened(fd: int, folder: Path, quoted: str, allow_hard_links: bool = False) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(quoted, st.st_mode)
    if st.st_nlink > 1 and not allow_hard_links:
        # Another name for the same bytes may sit in another user's folder: containment of
        # this name proves nothing about whose file it is.
        raise SourceError(
            f"{quoted} has {st.st_nlink} hard links, so it may be another user's file: "
            "copy it into your folder (a copy, not a link) and send the copy's path",
            code="SourceHardLinked",
            http_status=403,
        )
    os.set_blocking(fd, True)
    # Belt and braces on top of the O_NOFOLLOW walk: ask the kernel where the descriptor really
    # points (e.g. catches a bind mount or a folder renamed between the steps).
    if _PROC_FD.is_dir():
        where = Path(os.readlink(_PROC_FD / str(fd)))
        if not where.is_relative_to(folder):
            raise _outside(quoted)
