"""The first answers to signed commands that change something (aws.cancel, aws.retry), kept
for as long as their signature could be replayed (the timestamp window)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Delete, Engine, Insert, Integer, String, bindparam, delete, select

from vod2s3.store.db import dialect_insert, transaction
from vod2s3.store.rows import FromRow
from vod2s3.store.schema import command_answers
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql, now_sql

_ACCOUNT = bindparam("of_account", type_=Integer())
_SIGNATURE = bindparam("of_signature", type_=String())
_KEPT = "sql_kept"  # now minus how long answers are kept (a negative offset)


@dataclass(frozen=True, slots=True)
class StoredAnswer(FromRow):
    command: str
    status: int
    message: str
    data: Any
    code: str | None


_RECALL = select(
    *(command_answers.c[name] for name in ("command", "status", "message", "data", "code"))
).where(command_answers.c.account_id == _ACCOUNT, command_answers.c.signature == _SIGNATURE)


@functools.cache
def _remember(kind: TimeKind, dialect: str) -> Insert:
    insert = dialect_insert(dialect)
    return (
        insert(command_answers)
        .values(created=now_sql(kind))
        .on_conflict_do_nothing(
            index_elements=[command_answers.c.account_id, command_answers.c.signature]
        )
    )


@functools.cache
def _forget_old(kind: TimeKind) -> Delete:
    return delete(command_answers).where(command_answers.c.created < later_sql(kind, _KEPT))


class CommandAnswers:
    def __init__(self, engine: Engine, time: SqlTime, kept: timedelta) -> None:
        self._engine = engine
        self._time = time
        self._kept = kept

    def recall(self, account_id: int, signature: str) -> StoredAnswer | None:
        with transaction(self._engine) as conn:
            row = conn.execute(
                _RECALL, {_ACCOUNT.key: account_id, _SIGNATURE.key: signature}
            ).first()
        return None if row is None else StoredAnswer.from_row(row)

    def remember(
        self,
        account_id: int,
        signature: str,
        command: str,
        status: int,
        message: str,
        data: Any,
        code: str | None = None,
    ) -> None:
        """Keep the first answer (a later one for the same signature is dropped), and
        forget those no replay can reach any more."""
        with transaction(self._engine) as conn:
            conn.execute(
                _remember(self._time.kind, self._engine.dialect.name),
                {
                    "account_id": account_id,
                    "signature": signature,
                    "command": command,
                    "status": status,
                    "message": message,
                    "data": data,
                    "code": code,
                    **self._time.bind(),
                },
            )
            conn.execute(_forget_old(self._time.kind), self._time.bind(sql_kept=-self._kept))
