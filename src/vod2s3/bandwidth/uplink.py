"""A worker process's uplink budget: its cap (a timetable) shared max-min fair between the
accounts with uploads running, each account within its own cap.

Every account sending has one :class:`Limiter` that all its uploads' bodies pay into, at
the account's fair share. Shares are worked out again at once when an account starts or
stops sending (a finished account's share goes to the others right away), and at least
every ``refresh`` seconds otherwise: then the timetable's entry and the accounts' own caps
are read again, so ``accounts set --max-bandwidth`` reaches a running upload within the
account cache's lifetime plus ``refresh``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from vod2s3.bandwidth.bucket import Limiter
from vod2s3.bandwidth.report import AccountSending, SendingReport
from vod2s3.bandwidth.shares import fair_shares
from vod2s3.bandwidth.timetable import Timetable
from vod2s3.metrics import Metrics

log = logging.getLogger("vod2s3.worker")
REFRESH_SECONDS = 1.0


@dataclass
class _Sender:
    """An account with uploads running in this process."""

    cdn: int
    cap: int | None
    limiter: Limiter
    uploads: int = 0


@dataclass(frozen=True)
class AccountLimit:
    """What the budget needs to know of an account."""

    cdn: int
    cap: int | None  # its own cap in bytes/s (accounts set --max-bandwidth); None: none


# Looks an account up by id; may raise (the database away): the last cap known then holds.
AccountLimits = Callable[[int], AccountLimit]


class Bandwidth:
    def __init__(
        self,
        timetable: Timetable,
        accounts: AccountLimits,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        local_now: Callable[[], datetime] = datetime.now,
        refresh: float = REFRESH_SECONDS,
    ) -> None:
        self._timetable = timetable
        self._accounts = accounts
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._local_now = local_now
        self._refresh = refresh
        self._lock = threading.Lock()
        self._senders: dict[int, _Sender] = {}
        self._cap = timetable.cap_at(local_now())
        self._due = clock() + refresh
        self._sent: dict[int, int] = {}  # bytes per cdn since start
        self._reported: dict[int, int] = {}  # ... as of the last report
        self._reported_at = clock()
        metrics.bandwidth_cap("worker", None, self._cap)

    @property
    def cap(self) -> int | None:
        """The worker's cap in force (None: none)."""
        return self._cap

    @contextmanager
    def running(self, account_id: int) -> Iterator[None]:
        """An upload of ``account_id`` runs in the block: the account shares the budget."""
        with self._lock:
            sender = self._senders.get(account_id)
            if sender is None:
                limit = self._accounts(account_id)
                sender = _Sender(limit.cdn, limit.cap, self._new_limiter())
                self._senders[account_id] = sender
            sender.uploads += 1
            self._share_out()
        try:
            yield
        finally:
            with self._lock:
                sender.uploads -= 1
                if sender.uploads == 0:
                    del self._senders[account_id]
                    self._metrics.bandwidth_cap("account", sender.cdn, None)
                self._share_out()

    def throttle_for(self, account_id: int) -> Callable[[int], None]:
        """The hook an upload's bodies call before each chunk: it returns once the chunk
        may go, and counts it as sent. Only inside :meth:`running` for the account."""
        with self._lock:
            sender = self._senders[account_id]

        def throttle(count: int) -> None:
            self._refresh_if_due()
            sender.limiter.throttle(count)
            self._count(sender.cdn, count)

        return throttle

    def report(self) -> SendingReport:
        """Rates since the previous report, and the caps in force now."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._reported_at, 1e-9)
            sent, reported = dict(self._sent), self._reported
            self._reported, self._reported_at = sent, now
            senders = {s.cdn: s for s in self._senders.values()}
            cap = self._cap
        rates = {cdn: (sent[cdn] - reported.get(cdn, 0)) / elapsed for cdn in sent}
        accounts = tuple(
            AccountSending(
                cdn=cdn,
                sent_per_second=rates.get(cdn, 0.0),
                cap=_float(senders[cdn].cap) if cdn in senders else None,
                share=senders[cdn].limiter.rate if cdn in senders else None,
            )
            for cdn in sorted(set(senders) | {c for c, r in rates.items() if r > 0})
        )
        return SendingReport(_float(cap), sum(rates.values()), accounts)

    def _new_limiter(self) -> Limiter:
        return Limiter(None, self._clock, self._sleep)

    def _count(self, cdn: int, count: int) -> None:
        with self._lock:
            self._sent[cdn] = self._sent.get(cdn, 0) + count
        self._metrics.bytes_sent(cdn, count)

    def _refresh_if_due(self) -> None:
        if self._clock() < self._due:
            return
        with self._lock:
            if self._clock() < self._due:
                return  # another thread refreshed meanwhile
            self._due = self._clock() + self._refresh
            accounts = list(self._senders.items())
        # The account lookups may read the database: not under the lock.
        caps = {account_id: self._cap_of(account_id, s.cap) for account_id, s in accounts}
        cap = self._timetable.cap_at(self._local_now())
        with self._lock:
            for account_id, own in caps.items():
                if account_id in self._senders:
                    self._senders[account_id].cap = own
            if cap != self._cap:
                self._cap = cap
                self._metrics.bandwidth_cap("worker", None, cap)
            self._share_out()

    def _cap_of(self, account_id: int, known: int | None) -> int | None:
        try:
            return self._accounts(account_id).cap
        except Exception as error:  # an outage, a deleted account: the last cap holds
            log.debug("account %s: cap not read again (%s)", account_id, error)
            return known

    def _share_out(self) -> None:
        """Under the lock: every sending account's limiter at its fair share."""
        shares = fair_shares(self._cap, {k: s.cap for k, s in self._senders.items()})
        for account_id, share in shares.items():
            sender = self._senders[account_id]
            sender.limiter.set_rate(share)
            self._metrics.bandwidth_cap("account", sender.cdn, share)


def _float(rate: int | float | None) -> float | None:
    return None if rate is None else float(rate)
