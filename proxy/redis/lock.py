"""A lock held by one owner across every replica: ``SET key owner NX PX ttl`` in Redis.

Only its owner can release it (a compare-and-delete script), and it expires by itself
after ``ttl``, so a replica that dies holding it blocks the others for ``ttl`` at most.
Waiting for it is bounded and polls with a growing pause, never a busy loop::

    lock = RedisLock(store, store.key("lock", digest), ttl=70, wait=70)
    waited = await lock.acquire()   # RefreshBusy after ``wait`` seconds
    try:
        ...
    finally:
        await lock.release()
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time

from proxy.errors import RefreshBusy
from proxy.redis.client import SharedStore

#: The first pause between attempts, and the longest: a lock is held for one call to
#: Zoom's token endpoint, typically a few hundred milliseconds.
FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.1


class RedisLock:
    """One acquisition of a named lock; a new owner id for each instance."""

    def __init__(self, store: SharedStore, key: str, *, ttl: float, wait: float) -> None:
        self._store = store
        self.key = key
        self._ttl = ttl
        self._wait = wait
        self.owner = secrets.token_hex(16).encode()

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; whether this owner now holds it."""
        return await self._store.set_if_absent(self.key, self.owner, ttl=self._ttl)

    async def acquire(self) -> bool:
        """Take the lock, waiting at most ``wait`` seconds; whether it had to wait.

        Raises :class:`RefreshBusy` when another owner held it all that time, and
        :class:`SessionStoreUnavailable` when Redis fails.
        """
        if await self.try_acquire():
            return False
        deadline = time.monotonic() + self._wait
        pause = FIRST_PAUSE
        while time.monotonic() < deadline:
            await asyncio.sleep(min(pause * random.uniform(0.5, 1.5), LONGEST_PAUSE))
            if await self.try_acquire():
                return True
            pause = min(pause * 2, LONGEST_PAUSE)
        raise RefreshBusy()

    async def release(self) -> bool:
        """Release the lock if this owner still holds it; whether it did."""
        return await self._store.delete_if_equal(self.key, self.owner)
