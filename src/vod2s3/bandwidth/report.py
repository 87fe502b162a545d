"""What a worker process sends, as its heartbeat writes it into its ``workers`` row and the
dashboard (another process) reads it back. Rates are averages since the previous report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


def _rate(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AccountSending:
    cdn: int
    sent_per_second: float
    cap: float | None  # the account's own cap (accounts set --max-bandwidth); None: none
    share: float | None  # the rate it may send at now in this worker; None: unlimited


@dataclass(frozen=True)
class SendingReport:
    cap: float | None = None  # the worker's cap in force now; None: none
    sent_per_second: float = 0.0
    accounts: tuple[AccountSending, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "cap": self.cap,
            "sent_per_second": self.sent_per_second,
            "accounts": [
                {"cdn": a.cdn, "sent_per_second": a.sent_per_second, "cap": a.cap, "share": a.share}
                for a in self.accounts
            ],
        }

    @classmethod
    def from_json(cls, value: object) -> SendingReport:
        """What :meth:`as_json` wrote; an empty report for NULL (a worker of an older
        version, or one that has not reported yet)."""
        if not isinstance(value, dict):
            return cls()
        accounts = tuple(
            AccountSending(
                cdn=int(a["cdn"]),
                sent_per_second=float(a["sent_per_second"]),
                cap=_rate(a.get("cap")),
                share=_rate(a.get("share")),
            )
            for a in value.get("accounts") or ()
        )
        return cls(_rate(value.get("cap")), float(value.get("sent_per_second") or 0.0), accounts)


class Reporting(Protocol):
    """A worker row as far as the uplink is concerned."""

    @property
    def sending(self) -> SendingReport: ...


@dataclass(frozen=True)
class AccountUplink:
    """One account over all the workers that report it."""

    cdn: int
    sent_per_second: float
    cap: float | None  # its own cap, per worker process
    share: float | None  # the sum of its shares in the workers; None: unlimited in one
    workers: int


def uplink_by_account(workers: Iterable[Reporting]) -> list[AccountUplink]:
    """Each account's rates summed over ``workers``' last reports, by cdn."""
    seen: dict[int, list[AccountSending]] = {}
    for worker in workers:
        for account in worker.sending.accounts:
            seen.setdefault(account.cdn, []).append(account)
    return [
        AccountUplink(
            cdn=cdn,
            sent_per_second=sum(a.sent_per_second for a in reports),
            cap=reports[0].cap,
            share=None
            if any(a.share is None for a in reports)
            else sum(a.share for a in reports if a.share is not None),
            workers=len(reports),
        )
        for cdn, reports in sorted(seen.items())
    ]
