"""Encryption of secrets at rest, with the operator's master key."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vod2s3.errors import ConfigurationError

# Decrypted secrets are remembered by their ciphertext: every API request and every upload
# would otherwise decrypt the same few tokens again (an HMAC and an AES pass each). The
# stored ciphertext is still read on every use, so a rotated or removed secret stops
# working at once; only its decryption is reused.
_REMEMBERED = 4096


class SecretBox:
    """Encrypts and decrypts the account secrets stored in the database."""

    def __init__(self, master_key: str) -> None:
        self._decrypted: dict[str, str] = {}
        try:
            self._fernet = Fernet(master_key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ConfigurationError(
                "VOD2S3_MASTER_KEY is not a valid key: generate one with `python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        remembered = self._decrypted.get(token)
        if remembered is not None:
            return remembered
        try:
            plain = self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                "A stored secret cannot be decrypted: VOD2S3_MASTER_KEY is not the key "
                "the database was written with"
            ) from None
        if len(self._decrypted) >= _REMEMBERED:
            self._decrypted.clear()
        self._decrypted[token] = plain
        return plain


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


def load_master_key(configured: str, key_file: Path | None) -> str:
    """The configured key, else the one kept in ``key_file`` (created on first use)."""
    if configured:
        return configured
    if key_file is None:
        raise ConfigurationError(
            "Set VOD2S3_MASTER_KEY (or VOD2S3_MASTER_KEY_FILE): with a database other than a "
            "SQLite file there is no place to keep a generated key, and every process must "
            "share the same one"
        )
    if key_file.exists():
        return _read_private(key_file)
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
