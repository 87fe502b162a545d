"""What every command handler gets: the stores, the settings, the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vod2s3.accounts import Account, AccountStore
from vod2s3.api.ratelimit import AddressLimiter, RateLimiter
from vod2s3.clock import Clock
from vod2s3.config import Settings
from vod2s3.crypto import SecretBox
from vod2s3.metrics import Metrics
from vod2s3.store.answers import CommandAnswers
from vod2s3.store.dashboard import DashboardQueries
from vod2s3.store.records import RecordStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    accounts: AccountStore
    uploads: RecordStore
    box: SecretBox
    clock: Clock
    limiter: RateLimiter
    answers: CommandAnswers
    addresses: AddressLimiter
    metrics: Metrics = field(default_factory=Metrics)
    dashboard: DashboardQueries | None = None  # None: /dashboard is off
    # Called when an upload is queued: `serve` wakes its worker with it, so the upload
    # starts at once instead of at the worker's next poll.
    queued: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Call:
    """One authenticated command call."""

    account: Account
    obj: dict[str, Any]
    signature: str
