"""Master key rotation: a new key in the key file, every stored secret re-encrypted with it,
then the old key dropped (docs/deployment.md "Key rotation").

Running processes learn the new key from the key file: a box that meets a secret none of
its keys decrypts rereads the file (crypto.SecretBox). The new key is therefore written to
the file before any secret is encrypted with it, and the old one stays in the file until
no stored secret needs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from vod2s3.config import Settings
from vod2s3.crypto import SecretBox, read_key_file, split_keys, write_key_file
from vod2s3.errors import ConfigurationError, Conflict
from vod2s3.runtime import master_key_file
from vod2s3.store.secrets import StoredSecret, StoredSecrets


@dataclass(frozen=True)
class Reencrypted:
    rewritten: int  # secrets now encrypted with the newest key
    changed_meanwhile: int  # replaced by a new value while this ran (already current)


def rotation_key_file(settings: Settings) -> Path:
    """The key file a rotation changes; refused when the keys come from the environment,
    which running processes cannot reread."""
    if settings.master_key:
        raise ConfigurationError(
            "The master key comes from VOD2S3_MASTER_KEY, which running processes cannot "
            "reread: put it in a file instead (one key per line, chmod 600, owned by the "
            "user vod2s3 runs as), set VOD2S3_MASTER_KEY_FILE to that file in place of "
            "VOD2S3_MASTER_KEY, restart the processes, then rotate"
        )
    key_file = master_key_file(settings)
    if key_file is None:
        raise ConfigurationError(
            "There is no master key file to rotate: set VOD2S3_MASTER_KEY_FILE"
        )
    return key_file


def add_new_key(key_file: Path) -> list[str]:
    """A new key, first in ``key_file`` (it encrypts from now on), the older ones after it
    (they still decrypt). Returns the keys now in the file."""
    keys = [Fernet.generate_key().decode("ascii"), *split_keys(read_key_file(key_file))]
    write_key_file(key_file, keys)
    return keys


def reencrypt(secrets: StoredSecrets, box: SecretBox) -> Reencrypted:
    """Every stored secret not yet encrypted with the newest key, re-encrypted with it."""
    rewritten = changed = 0
    for secret in secrets.all():
        if box.newest_key_decrypts(secret.token):
            continue
        if secrets.replace(secret, box.reencrypt(secret.token)):
            rewritten += 1
        else:
            changed += 1
    return Reencrypted(rewritten, changed)


def needing_older_keys(secrets: StoredSecrets, box: SecretBox) -> list[StoredSecret]:
    return [secret for secret in secrets.all() if not box.newest_key_decrypts(secret.token)]


def retire_older_keys(key_file: Path, secrets: StoredSecrets) -> int:
    """Leave only the newest key in ``key_file``; refused while a stored secret needs an
    older one. Returns how many keys were dropped."""
    keys = split_keys(read_key_file(key_file))
    if len(keys) == 1:
        return 0
    box = SecretBox("\n".join(keys))
    _refuse_if_needed(needing_older_keys(secrets, box))
    write_key_file(key_file, keys[:1])
    # A command started before the rotation (with the old key first) may have written a
    # secret between the check and the new file: check again, and put the keys back if so.
    late = needing_older_keys(secrets, box)
    if late:
        write_key_file(key_file, keys)
        _refuse_if_needed(late)
    return len(keys) - 1


def _refuse_if_needed(needing: list[StoredSecret]) -> None:
    if not needing:
        return
    cdns = ", ".join(sorted({str(secret.cdn) for secret in needing}))
    raise Conflict(
        f"{len(needing)} stored secrets (accounts cdn {cdns}) are still encrypted with an "
        "older key, which retiring would make unreadable: run `vod2s3 keys reencrypt` (or "
        "finish `vod2s3 keys rotate`) first, then retire"
    )
