"""`vod2s3 keys`: master key rotation while the service runs (vod2s3/keyrotation.py)."""

from __future__ import annotations

import click

from vod2s3.cli import _require_schema, _runtime, friendly_errors
from vod2s3.crypto import SecretBox, read_key_file
from vod2s3.keyrotation import (
    add_new_key,
    needing_older_keys,
    reencrypt,
    retire_older_keys,
    rotation_key_file,
)
from vod2s3.runtime import Runtime
from vod2s3.store.secrets import StoredSecrets


@click.group()
def keys() -> None:
    """The master keys that encrypt the stored secrets."""


def _opened() -> tuple[Runtime, StoredSecrets]:
    runtime = _runtime()
    _require_schema(runtime)
    return runtime, StoredSecrets(runtime.engine)


def _reencrypt_and_say(key_file_keys: str, secrets: StoredSecrets) -> None:
    done = reencrypt(secrets, SecretBox(key_file_keys))
    click.echo(
        f"{done.rewritten} stored secrets re-encrypted with the newest key"
        + (
            f", {done.changed_meanwhile} changed meanwhile (already current)"
            if done.changed_meanwhile
            else ""
        )
    )


@keys.command("rotate")
@click.option(
    "--add-only",
    is_flag=True,
    help="Only add the new key to the key file (several hosts: copy the file to every host, "
    "then run `vod2s3 keys reencrypt`).",
)
@friendly_errors
def keys_rotate(add_only: bool) -> None:
    """Add a new master key that encrypts from now on, and re-encrypt every stored secret
    with it; the older keys still decrypt until `vod2s3 keys retire`."""
    runtime, secrets = _opened()
    key_file = rotation_key_file(runtime.settings)
    count = len(add_new_key(key_file))
    click.echo(f"{key_file}: a new key added first ({count} keys, newest first)")
    if add_only:
        click.echo("Copy this file to every host, then run `vod2s3 keys reencrypt`")
        return
    _reencrypt_and_say(read_key_file(key_file), secrets)
    click.echo("Then `vod2s3 keys retire` drops the older keys (back up the key file first)")


@keys.command("reencrypt")
@friendly_errors
def keys_reencrypt() -> None:
    """Re-encrypt every stored secret with the newest key of the key file."""
    runtime, secrets = _opened()
    _reencrypt_and_say(read_key_file(rotation_key_file(runtime.settings)), secrets)


@keys.command("retire")
@friendly_errors
def keys_retire() -> None:
    """Drop every key but the newest from the key file; refused while a stored secret
    still needs an older one."""
    runtime, secrets = _opened()
    key_file = rotation_key_file(runtime.settings)
    dropped = retire_older_keys(key_file, secrets)
    if dropped == 0:
        click.echo(f"{key_file} holds one key: nothing to retire")
        return
    click.echo(f"{key_file}: {dropped} older keys dropped; the newest alone remains")


@keys.command("status")
@friendly_errors
def keys_status() -> None:
    """How many keys the key file holds, and how many stored secrets need an older one."""
    runtime, secrets = _opened()
    key_file = rotation_key_file(runtime.settings)
    keys_now = read_key_file(key_file)
    box = SecretBox(keys_now)
    needing = needing_older_keys(secrets, box)
    click.echo(f"{key_file}: {box.key_count} keys; {len(needing)} stored secrets need an older key")
