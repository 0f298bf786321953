"""Who may refresh a token, when several replicas serve the same users.

:class:`~proxy.tokens.refresh.Refresher` keeps its single flight and its rotation grace in
memory, so within a process concurrent requests already share one refresh. Between
processes, a :class:`Coordinator` decides what that one refresh does:

* :class:`LocalCoordinator`: call Zoom. Right for a single replica.
* :class:`SharedGrace` (``session.store: cookie`` with ``redis.url``): the rotation
  grace lives in Redis, and a Redis lock per refresh token lets one replica refresh
  while the others wait and then take its successor. Each is keyed by a hash of the
  refresh token, never the token, and every stored token is encrypted with the
  session keys.
* :class:`~proxy.session.store.RedisSessions` (``session.store: redis``) coordinates
  its own sessions with a lock per session.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.fernet import MultiFernet

from proxy.errors import (
    ProxyError,
    RefreshRejected,
    SessionStoreUnavailable,
    TokenEndpointInvalid,
    TokenEndpointUnavailable,
)
from proxy.redis.client import SharedStore
from proxy.redis.lock import RedisLock
from proxy.tokens.model import Tokens, tokens_from_json, tokens_to_json
from proxy.tokens.sealing import seal, unseal

log = logging.getLogger(__name__)

RefreshCall = Callable[[str], Awaitable[Tokens]]

#: Seconds a refresh's outcome waits for the replicas that queued on its lock. They
#: poll at least every 0.1 s, so this is plenty; a late request is the grace's job.
HANDOFF_TTL = 10.0
#: Failures another replica may take over as its own answer instead of calling Zoom.
_SHAREABLE_ERRORS: dict[str, type[ProxyError]] = {
    cls.__name__: cls for cls in (RefreshRejected, TokenEndpointUnavailable, TokenEndpointInvalid)
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """New tokens, and whether another replica's refresh provided them."""

    tokens: Tokens
    shared: bool = False


class Coordinator(Protocol):
    """Runs the one refresh of ``tokens`` that this process's single flight allows.

    ``key`` names what is being refreshed: the refresh token for cookie sessions,
    the session id for server-side ones.
    """

    async def refresh(self, key: str, tokens: Tokens, call: RefreshCall) -> Outcome: ...


class LocalCoordinator:
    """No one else to ask: call Zoom."""

    async def refresh(self, key: str, tokens: Tokens, call: RefreshCall) -> Outcome:
        return Outcome(await call(tokens.refresh_token))


LOCAL = LocalCoordinator()


class SharedGrace:
    """Single flight and rotation grace for cookie sessions, across replicas, in Redis.

    For a refresh token about to be refreshed:

    1. a successor in the shared grace is used at once;
    2. else the replica takes the token's lock, waiting while another replica holds it;
    3. with the lock, it looks again: a successor (or, if it waited, the holder's
       failure) is taken over, and Zoom is not called;
    4. else it calls Zoom and records the outcome: the successor under the grace for
       ``rotation_grace`` seconds, and for the replicas queued on the lock.

    With ``fall_back_locally`` (``redis.on_unavailable: local``) a Redis failure before
    the call to Zoom refreshes without coordination, with one warning per outage;
    otherwise it is a 503.
    """

    def __init__(
        self,
        store: SharedStore,
        fernet: MultiFernet,
        *,
        rotation_grace: float,
        lock_ttl: float,
        fall_back_locally: bool = False,
    ) -> None:
        self._store = store
        self._fernet = fernet
        self._grace = rotation_grace
        self._lock_ttl = lock_ttl
        self._fall_back = fall_back_locally
        self._degraded = False

    async def refresh(self, key: str, tokens: Tokens, call: RefreshCall) -> Outcome:
        try:
            outcome = await self._coordinated(tokens, call)
        except SessionStoreUnavailable:
            if not self._fall_back:
                raise
            if not self._degraded:
                self._degraded = True
                log.warning(
                    "refreshing without Redis: until it returns, each replica coordinates "
                    "only its own requests (redis.on_unavailable: local)"
                )
            return await LOCAL.refresh(key, tokens, call)
        self._degraded = False
        return outcome

    async def _coordinated(self, tokens: Tokens, call: RefreshCall) -> Outcome:
        digest = hashlib.sha256(tokens.refresh_token.encode()).hexdigest()
        grace_key = self._store.key("grace", digest)
        handoff_key = self._store.key("handoff", digest)
        successor = self._open_tokens(await self._store.get(grace_key))
        if successor is not None:
            return Outcome(successor, shared=True)
        lock = RedisLock(
            self._store,
            self._store.key("lock", "refresh", digest),
            ttl=self._lock_ttl,
            wait=self._lock_ttl,
        )
        waited = await lock.acquire()
        try:
            grace, handoff = await self._store.get_many(grace_key, handoff_key)
            successor = self._open_tokens(grace)
            if successor is None and waited:
                successor = self._open_handoff(handoff)
            if successor is not None:
                return Outcome(successor, shared=True)
            try:
                successor = await call(tokens.refresh_token)
            except ProxyError as error:
                await self._record_failure(handoff_key, error)
                raise
            await self._record(grace_key, handoff_key, successor)
            return Outcome(successor)
        finally:
            await _release(lock)

    async def _record(self, grace_key: str, handoff_key: str, successor: Tokens) -> None:
        """Zoom has spent the old token: a Redis failure now must not lose the successor."""
        sealed = seal(self._fernet, {"tokens": tokens_to_json(successor)})
        entries = [(handoff_key, sealed, HANDOFF_TTL)]
        if self._grace > 0:
            entries.append((grace_key, sealed, self._grace))
        try:
            await self._store.set_many(entries)
        except SessionStoreUnavailable:
            log.warning("a refresh succeeded but Redis could not record it for the other replicas")

    async def _record_failure(self, handoff_key: str, error: ProxyError) -> None:
        name = type(error).__name__
        if name in _SHAREABLE_ERRORS:
            # If Redis fails now, the waiting replicas ask Zoom themselves.
            with contextlib.suppress(SessionStoreUnavailable):
                sealed = seal(self._fernet, {"error": name})
                await self._store.set(handoff_key, sealed, ttl=HANDOFF_TTL)

    def _open_tokens(self, value: bytes | None) -> Tokens | None:
        data = None if value is None else unseal(self._fernet, value)
        return None if data is None else tokens_from_json(data.get("tokens"))

    def _open_handoff(self, value: bytes | None) -> Tokens | None:
        """The successor a lock holder left, or its failure raised as this request's."""
        data = None if value is None else unseal(self._fernet, value)
        if data is None:
            return None
        error = _SHAREABLE_ERRORS.get(str(data.get("error")))
        if error is not None:
            raise error()
        return tokens_from_json(data.get("tokens"))


async def _release(lock: RedisLock) -> None:
    """Release, and if Redis cannot be reached, let the lock expire by itself."""
    try:
        await lock.release()
    except SessionStoreUnavailable:
        log.debug("lock %s left to expire", lock.key)
