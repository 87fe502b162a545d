"""Encryption of secrets at rest, with the operator's master keys.

Several keys may be configured, newest first (a rotation in progress, docs/deployment.md
"Key rotation"): the newest encrypts, every one decrypts (Fernet's MultiFernet)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from vod2s3.errors import ConfigurationError

# Decrypted secrets are remembered by their ciphertext: every API request and every upload
# would otherwise decrypt the same few tokens again (an HMAC and an AES pass each). The
# stored ciphertext is still read on every use, so a rotated or removed secret stops
# working at once; only its decryption is reused.
_REMEMBERED = 4096


GENERATE_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def split_keys(text: str) -> list[str]:
    """The keys of VOD2S3_MASTER_KEY or of a key file: one per line (or comma-separated),
    newest first."""
    return [key for key in re.split(r"[\s,]+", text) if key]


def fernet_of(key: str) -> Fernet:
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigurationError(
            f"The master key is not a valid Fernet key: generate one with `{GENERATE_KEY}`"
        ) from None


class SecretBox:
    """Encrypts and decrypts the account secrets stored in the database.

    ``reload`` rereads the keys (from the key file) when a stored secret decrypts with none
    of them: a rotation run by `vod2s3 keys rotate` while this process runs re-encrypts
    secrets with a key written to the file after this process read it."""

    def __init__(self, master_key: str, reload: Callable[[], str] | None = None) -> None:
        self._decrypted: dict[str, str] = {}
        self._reload = reload
        self._use(master_key)

    def _use(self, master_key: str) -> None:
        keys = split_keys(master_key)
        if not keys:
            raise ConfigurationError(f"The master key is empty: generate one with `{GENERATE_KEY}`")
        self._keys = keys
        self._fernets = [fernet_of(key) for key in keys]
        self._multi = MultiFernet(self._fernets)

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def encrypt(self, plain: str) -> str:
        return self._multi.encrypt(plain.encode("utf-8")).decode("ascii")

    def newest_key_decrypts(self, token: str) -> bool:
        """Does the key that encrypts from now on read ``token``? (`keys retire` drops the
        older keys only when it does for every stored secret.)"""
        try:
            self._fernets[0].decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def reencrypt(self, token: str) -> str:
        """``token``'s secret encrypted with the newest key."""
        self.decrypt(token)  # reloads the keys if need be; a clear error if none reads it
        return self._multi.rotate(token.encode("ascii")).decode("ascii")

    def decrypt(self, token: str) -> str:
        remembered = self._decrypted.get(token)
        if remembered is not None:
            return remembered
        try:
            plain = self._decrypt_reloading(token)
        except InvalidToken:
            raise ConfigurationError(
                "A stored secret cannot be decrypted: the master key (VOD2S3_MASTER_KEY or "
                "its key file) is not a key the database was written with"
            ) from None
        if len(self._decrypted) >= _REMEMBERED:
            self._decrypted.clear()
        self._decrypted[token] = plain
        return plain

    def _decrypt_reloading(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            if self._reload is None:
                raise
            fresh = self._reload()
            if split_keys(fresh) == self._keys:
                raise
            self._use(fresh)
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")


def _read_private(key_file: Path) -> str:
    """The key in ``key_file``, which nobody but its owner may read: a key that others could
    read decrypts every stored secret, so it is refused rather than used."""
    mode = key_file.stat().st_mode
    if mode & 0o077:
        raise ConfigurationError(
            f"The master key file {key_file} can be read or changed by other users "
            f"(mode {mode & 0o777:o}): run `chmod 600 {key_file}` (and consider rotating "
            "the secrets it protects), or set VOD2S3_MASTER_KEY"
        )
    return key_file.read_text(encoding="ascii").strip()


def read_key_file(key_file: Path) -> str:
    """The keys in ``key_file`` (newest first), refused if others may read it."""
    try:
        return _read_private(key_file)
    except FileNotFoundError:
        raise ConfigurationError(
            f"The master key file {key_file} does not exist: create it with "
            f"`{GENERATE_KEY} > {key_file} && chmod 600 {key_file}` (every host of one "
            "database must hold the same file)"
        ) from None
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read the master key file {key_file} ({error.strerror}): it must be "
            "readable by the user vod2s3 runs as"
        ) from None


def write_key_file(key_file: Path, keys: list[str]) -> None:
    """Replace ``key_file`` with ``keys`` (newest first) at once: a process rereading it
    sees the old list or the new one, never half of one (a new file renamed over it)."""
    temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("".join(key + "\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, key_file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_master_key(configured: str, key_file: Path | None, create: bool = True) -> str:
    """The configured keys, else those kept in ``key_file`` (created on first use when
    ``create``: the file beside a SQLite database, which only this host uses)."""
    if configured:
        return configured
    if key_file is None:
        raise ConfigurationError(
            "Set VOD2S3_MASTER_KEY or VOD2S3_MASTER_KEY_FILE: with a database other than a "
            "SQLite file there is no place to keep a generated key, and every process must "
            "share the same one"
        )
    if key_file.exists() or not create:
        return read_key_file(key_file)
    key = Fernet.generate_key().decode("ascii")
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_private(key_file)
    except OSError as error:
        raise ConfigurationError(
            f"Cannot create the master key file {key_file} beside the SQLite database "
            f"({error.strerror}): check that its folder exists and is writable, or set "
            "VOD2S3_MASTER_KEY"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key
