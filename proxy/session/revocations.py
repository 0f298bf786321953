"""Users who removed the app (``app_deauthorized``), and since when: a session of theirs
that began before then is over (SPEC 14).

Every replica keeps the list in memory, so that the check costs one dictionary lookup
on every request, on either transport. With ``redis.url`` set, a revocation is also
appended to a Redis stream, which every replica reads from the start when it starts (a
replica started later learns it too) and then polls every :data:`POLL_INTERVAL`
seconds (other replicas learn it within two seconds). Entries are kept for
``session.max_age``: by then every session that began before them has expired anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from proxy.errors import SessionStoreUnavailable
from proxy.redis.client import SharedStore

log = logging.getLogger(__name__)

#: Seconds between reads of the shared stream.
POLL_INTERVAL = 0.5


class Revocations:
    """Revocations known to this process."""

    def __init__(self, *, keep_for: float, clock: Callable[[], float] = time.time) -> None:
        self._keep_for = keep_for
        self._clock = clock
        #: When each user's sessions were revoked (unix seconds), latest kept.
        self._since: dict[str, float] = {}

    def revoked(self, user_id: str, signed_in_at: float) -> bool:
        """Whether a session of ``user_id`` that began at ``signed_in_at`` is over."""
        since = self._since.get(user_id)
        return since is not None and signed_in_at <= since

    async def revoke(self, user_id: str, at: float) -> None:
        """End every session of ``user_id`` that began at or before ``at``."""
        self.learn(user_id, at)

    def learn(self, user_id: str, at: float) -> None:
        if at < self._clock() - self._keep_for:
            return  # older than any session still alive
        self._since[user_id] = max(at, self._since.get(user_id, at))
        if len(self._since) % 1024 == 0:
            self._forget_old()

    def _forget_old(self) -> None:
        oldest = self._clock() - self._keep_for
        for user_id in [user for user, at in self._since.items() if at < oldest]:
            del self._since[user_id]

    async def close(self) -> None:
        """Stop following other replicas, if it does."""


class SharedRevocations(Revocations):
    """Revocations shared by the replicas through a Redis stream."""

    def __init__(
        self, store: SharedStore, *, keep_for: float, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(keep_for=keep_for, clock=clock)
        self._store = store
        self._stream = store.key("revocations")
        #: The id of the last stream entry read.
        self._read_up_to = "0-0"
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Learn every revocation still in force, then follow new ones."""
        with contextlib.suppress(SessionStoreUnavailable):  # the poller catches up
            await self._catch_up()
        self._poller = asyncio.ensure_future(self._poll())

    async def revoke(self, user_id: str, at: float) -> None:
        await self._store.append_to_stream(
            self._stream, {"user_id": user_id, "at": repr(at)}, keep_for=self._keep_for
        )
        self.learn(user_id, at)

    async def _catch_up(self) -> None:
        while entries := await self._store.read_stream(self._stream, after=self._read_up_to):
            for entry_id, fields in entries:
                self._read_up_to = entry_id
                user_id, at = fields.get("user_id"), fields.get("at")
                with contextlib.suppress(TypeError, ValueError):
                    self.learn(str(user_id), float(str(at)))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            with contextlib.suppress(SessionStoreUnavailable):  # logged by the store
                await self._catch_up()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
