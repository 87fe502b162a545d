"""Accounts as workers see them: looked up and decrypted once every few seconds, not per file.

A worker sending many small files would otherwise read the account's row and decrypt its
AWS secret (Fernet: an HMAC and an AES pass) for every one of them. A change to an account
(new AWS keys, disabled) reaches workers within ``ttl`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vod2s3.accounts import Account, AccountStore
from vod2s3.bandwidth.uplink import AccountLimit
from vod2s3.crypto import SecretBox
from vod2s3.errors import DatabaseUnavailable, NotFound
from vod2s3.s3 import S3Target

DEFAULT_TTL = 5.0


@dataclass(frozen=True)
class _Cached:
    account: Account
    target: S3Target
    until: float


class AccountCache:
    def __init__(
        self,
        accounts: AccountStore,
        box: SecretBox,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._box = box
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[int, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, account_id: int) -> Account:
        """The account; raises NotFound when it no longer exists."""
        return self._entry(account_id).account

    def disabled_now(self, account_id: int) -> bool:
        """Has the account been disabled (or deleted)? Asked before every part of a running
        upload, so it reads the database at most once per ``ttl``. While the database cannot
        answer, the last known state holds: an outage alone stops no upload."""
        try:
            return self.get(account_id).disabled
        except NotFound:
            return True
        except DatabaseUnavailable:
            cached = self._cache.get(account_id)
            return cached is not None and cached.account.disabled

    def limit(self, account_id: int) -> AccountLimit:
        """The account's cdn and own bandwidth cap, for the uplink budget: read again at
        most once per ``ttl``, the last known while the database cannot answer."""
        try:
            account = self.get(account_id)
        except DatabaseUnavailable:
            cached = self._cache.get(account_id)
            if cached is None:
                raise
            account = cached.account
        return AccountLimit(account.cdn, account.max_bandwidth)

    def target(self, account: Account) -> S3Target:
        """The account's S3 settings with its secret decrypted."""
        cached = self._cache.get(account.id)
        if cached is not None and cached.account == account:
            return cached.target
        return account_target(account, self._box)

    def _entry(self, account_id: int) -> _Cached:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(account_id)
            if cached is not None and now < cached.until:
                return cached
        account = self._accounts.get_by_id(account_id)
        fresh = _Cached(account, account_target(account, self._box), now + self._ttl)
        with self._lock:
            self._cache[account_id] = fresh
        return fresh


def account_target(account: Account, box: SecretBox) -> S3Target:
    return S3Target(
        access_key_id=account.aws_access_key_id,
        secret_access_key=account.aws_secret_access_key(box),
        region=account.aws_region,
        endpoint_url=account.aws_endpoint_url,
        addressing_style=account.addressing_style or "auto",
        ca_bundle=account.ca_bundle or "",
        payload_signing=account.payload_signing or "",
    )
