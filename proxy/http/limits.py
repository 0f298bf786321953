"""What one client may hold of the server, on either transport: how long an idle
keep-alive connection stays, and the partial request heads held at once, each timed
and all counted against one budget (:class:`HeadBudget`, :class:`HeadWatch`).

The front (:mod:`proxy.http.front`) and aiohttp's connections
(:mod:`proxy.http.server`) both hold heads while they arrive; a slow-loris client must
meet the same limits whichever reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Seconds an idle keep-alive connection is kept (aiohttp's connections are told the
#: same in proxy.http.server; nginx's default is 75 s too).
KEEPALIVE_TIMEOUT = 75.0
#: Bytes of partial request heads held over all of a front's connections (each holds at
#: most ``max_head_size``): 256 slow clients at the largest head, or many more smaller.
HEAD_BUDGET = 16 << 20


class HeadBudget:
    """The bytes of partial request heads held over all connections, against a limit."""

    __slots__ = ("held", "limit", "peak")

    def __init__(self, limit: int = HEAD_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        #: The most ever held at once.
        self.peak = 0

    def change(self, before: int, after: int) -> bool:
        """A head held ``before`` bytes and now ``after``; whether that fits."""
        held = self.held - before + after
        if after > before and held > self.limit:
            self.held -= before
            return False
        self.held = held
        self.peak = max(self.peak, held)
        return True


class HeadWatch:
    """One connection's request head while it arrives, on either transport: timed from
    its first held byte (``on_timeout`` then refuses it), its bytes counted in the
    :class:`HeadBudget` shared by every connection."""

    __slots__ = ("_budget", "_on_timeout", "_timeout", "_timer", "held")

    def __init__(self, budget: HeadBudget, timeout: float, on_timeout: Callable[[], None]) -> None:
        self._budget = budget
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._timer: asyncio.TimerHandle | None = None
        #: Bytes of the head counted in the budget.
        self.held = 0

    def hold(self, size: int) -> bool:
        """The head has ``size`` bytes now; whether they fit in the budget (if not, it
        holds none)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout)
        if self._budget.change(self.held, size):
            self.held = size
            return True
        self.held = 0
        return False

    def end(self) -> None:
        """The head is whole, refused or gone: it no longer counts, nor is it timed."""
        if self.held:
            self._budget.change(self.held, 0)
            self.held = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
