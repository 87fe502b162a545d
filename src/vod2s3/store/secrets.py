"""Every encrypted value the database holds, read and replaced one at a time: what a master
key rotation re-encrypts (vod2s3/keyrotation.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Engine, select, update

from vod2s3.store.db import transaction
from vod2s3.store.schema import accounts

# The columns of accounts that hold Fernet tokens; "" or NULL where there is no secret.
ENCRYPTED_COLUMNS: tuple[Column[str], ...] = (
    accounts.c.secret_enc,
    accounts.c.previous_secret_enc,
    accounts.c.aws_secret_access_key_enc,
)


@dataclass(frozen=True)
class StoredSecret:
    account_id: int
    cdn: int
    column: str
    token: str


class StoredSecrets:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def all(self) -> list[StoredSecret]:
        with transaction(self._engine) as conn:
            rows = conn.execute(
                select(accounts.c.id, accounts.c.cdn, *ENCRYPTED_COLUMNS).order_by(accounts.c.id)
            ).all()
        return [
            StoredSecret(int(row.id), int(row.cdn), column.name, token)
            for row in rows
            for column in ENCRYPTED_COLUMNS
            if (token := row._mapping[column.name])
        ]

    def replace(self, secret: StoredSecret, token: str) -> bool:
        """Store ``token`` in place of ``secret`` unless the value changed meanwhile (a
        secret rotated or an AWS key set while the re-encryption ran: the new value is
        already encrypted with a current key). True if it was replaced."""
        column = accounts.c[secret.column]
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(accounts)
                .where(accounts.c.id == secret.account_id, column == secret.token)
                .values({column: token})
            )
        return done.rowcount == 1
