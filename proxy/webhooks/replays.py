"""Each event handled once: copies of an event Zoom already got a 200 for are answered
200 again and not passed on; copies that arrive while it is being handled wait for
that one outcome; after a failure, the next copy (Zoom's redelivery) is handled afresh.

An event is known by its signature, which covers its timestamp and its bytes. A
signature is remembered for twice ``max_skew``: after that its timestamp is refused as
stale, whatever this memory says.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

#: Signatures remembered at most; beyond that, the oldest are forgotten first.
MAX_REMEMBERED = 100_000


class Replays:
    def __init__(self, *, remember_for: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._remember_for = remember_for
        self._clock = clock
        #: Signatures answered 200, and until when they are remembered (oldest first).
        self._answered: OrderedDict[str, float] = OrderedDict()
        #: Signatures being handled, with the task handling them.
        self._handling: dict[str, asyncio.Task[None]] = {}

    async def once(self, key: str, handle: Callable[[], Awaitable[None]]) -> bool:
        """Run ``handle`` for the event ``key``, and True; False, without running it, for
        a copy: of an event answered already, or of one being handled, whose outcome
        (success or error) it shares."""
        self._forget_old()
        if key in self._answered:
            return False
        task = self._handling.get(key)
        first = task is None
        if task is None:
            task = asyncio.ensure_future(handle())
            self._handling[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # A copy whose sender leaves must not cancel the handling the others wait on.
        await asyncio.shield(task)
        return first

    def _settle(self, key: str, task: asyncio.Task[None]) -> None:
        del self._handling[key]
        if not task.cancelled() and task.exception() is None:
            self._answered[key] = self._clock() + self._remember_for
            if len(self._answered) > MAX_REMEMBERED:
                self._answered.popitem(last=False)

    def _forget_old(self) -> None:
        now = self._clock()
        answered = self._answered
        while answered and next(iter(answered.values())) <= now:
            answered.popitem(last=False)
