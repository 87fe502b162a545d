"""Max-min fair shares of a worker's cap between the accounts sending now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")


def fair_shares(total: float | None, caps: Mapping[K, float | None]) -> dict[K, float | None]:
    """Each account's rate (None: unlimited), given the worker's ``total`` (None: no cap)
    and each sending account's own cap (None: none).

    Water-filling: the cap is split equally; an account whose own cap is below its equal
    share gets its cap, and what it leaves is split equally between the others, and so on.
    No account gets more than its cap, none less than any other uncapped one, and the
    shares add up to ``total`` unless every account is held below it by its own cap. An
    account that stops sending is left out of ``caps``: its share goes to the others.
    """
    if total is None:
        return dict(caps)
    shares: dict[K, float | None] = {}
    left = float(total)
    # The smallest caps first; uncapped accounts last.
    order = sorted(caps, key=lambda k: (caps[k] is None, caps[k] or 0.0))
    for index, account in enumerate(order):
        equal = left / (len(order) - index)
        cap = caps[account]
        share = equal if cap is None else min(cap, equal)
        shares[account] = share
        left -= share
    return shares
