"""Refreshing Zoom tokens without ever logging a user out because requests raced.

Zoom's refresh tokens are single-use: each refresh returns a new pair and the old
refresh token dies at once. Two things follow.

* **Single flight.** Concurrent requests carrying the same refresh token share one
  call to Zoom, and its outcome, success or failure, answers all of them.
* **Rotation grace.** For ``rotation_grace`` seconds after a refresh, the superseded
  refresh token still maps to its successor, so a request that left the browser
  before the new cookie arrived is served with the new tokens instead of being
  refused by Zoom.

The call to Zoom runs in a task of its own: a client that disconnects mid-refresh
cannot cancel it, so a consumed refresh token always leaves its successor behind.

Both hold within one process. Across replicas, the one refresh a process's single
flight allows goes through a :class:`~proxy.tokens.coordination.Coordinator`, which shares
the lock and the grace through Redis (:mod:`proxy.tokens.coordination`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from proxy.errors import (
    RefreshBusy,
    RefreshRejected,
    SessionStoreUnavailable,
    TokenEndpointUnavailable,
)
from proxy.tokens.coordination import LOCAL, Coordinator, RefreshCall
from proxy.tokens.model import Tokens

#: Failures after which a still-valid access token is better than an error.
_TRANSIENT = (TokenEndpointUnavailable, SessionStoreUnavailable, RefreshBusy)

#: A successor chain longer than this means a loop, which a healthy Zoom never makes.
_MAX_CHAIN = 16


class Refresher:
    """Single-flight refresh with a rotation grace, for one process.

    >>> refresher = Refresher(oauth.refresh, margin=60, rotation_grace=60)
    >>> tokens = await refresher.fresh(tokens)        # before forwarding
    >>> tokens = await refresher.after_401(tokens)    # Zoom refused the access token

    ``session_id`` names a server-side session: its requests share one flight, and the
    coordinator locks that session rather than the refresh token.
    """

    def __init__(
        self,
        refresh_call: RefreshCall,
        *,
        margin: float,
        rotation_grace: float,
        coordinator: Coordinator = LOCAL,
        clock: Callable[[], float] = time.monotonic,
        on_outcome: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._refresh_call = refresh_call
        self._margin = margin
        self._grace = rotation_grace
        self._clock = clock
        self._on_outcome = on_outcome
        self._coordinator = coordinator
        self._in_flight: dict[str, asyncio.Future[Tokens]] = {}
        self._successors: OrderedDict[str, tuple[float, Tokens]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def successor(self, tokens: Tokens) -> Tokens:
        """The newest tokens known to replace ``tokens`` within the grace, else ``tokens``."""
        self._forget_expired()
        newest = tokens
        for _ in range(_MAX_CHAIN):
            entry = self._successors.get(newest.refresh_token)
            if entry is None:
                break
            newest = entry[1]
        if newest is not tokens:
            self._on_outcome("rotated_grace_hit")
        return newest

    def usable(self, tokens: Tokens) -> bool:
        """Whether :meth:`fresh` would return ``tokens`` themselves, at once (asked of
        every forwarded call, so it calls nothing when there are no successors)."""
        if self._successors:
            self._forget_expired()
            if tokens.refresh_token in self._successors:
                return False
        return not tokens.expires_within(self._margin)

    async def fresh(self, tokens: Tokens, *, session_id: str | None = None) -> Tokens:
        """Tokens good to forward with: a successor, or a proactive refresh near expiry.

        If Zoom's token endpoint (or the replicas' Redis) is down while the access
        token is still valid, the current token is used rather than failing a request
        that could succeed.
        """
        tokens = self.successor(tokens)
        if not tokens.expires_within(self._margin):
            return tokens
        try:
            return await self._refresh(tokens, session_id)
        except _TRANSIENT:
            if tokens.expires_within(0):
                raise
            return tokens

    async def after_401(self, rejected: Tokens, *, session_id: str | None = None) -> Tokens:
        """New tokens after Zoom refused ``rejected``'s access token."""
        newer = self.successor(rejected)
        if newer.access_token != rejected.access_token:
            return newer
        return await self._refresh(rejected, session_id)

    async def _refresh(self, tokens: Tokens, session_id: str | None) -> Tokens:
        key = session_id or tokens.refresh_token
        future = self._in_flight.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._in_flight[key] = future
            task = asyncio.create_task(self._run(key, tokens, future))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _run(self, key: str, tokens: Tokens, future: asyncio.Future[Tokens]) -> None:
        try:
            outcome = await self._coordinator.refresh(key, tokens, self._refresh_call)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:  # every waiter learns the one outcome
            self._on_outcome("invalid_grant" if isinstance(exc, RefreshRejected) else "error")
            future.set_exception(exc)
            # All clients may have left; nobody else would ever retrieve it.
            future.exception()
        else:
            self._on_outcome("shared" if outcome.shared else "ok")
            self._successors[tokens.refresh_token] = (self._clock() + self._grace, outcome.tokens)
            future.set_result(outcome.tokens)
        finally:
            del self._in_flight[key]

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._successors:
            key, (deadline, _) = next(iter(self._successors.items()))
            if deadline > now:
                break
            del self._successors[key]

    async def close(self) -> None:
        """Let in-flight refreshes finish so no consumed token is lost at shutdown."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
