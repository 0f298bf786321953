"""Where a signed-in session lives: whole in its cookie, or in Redis behind an opaque id.

Handlers reach sessions only through a :class:`SessionStore`, the one chosen by
``session.store``:

* :class:`CookieSessions` (``cookie``): the tokens ride in the encrypted cookie, and a
  refresh sets a new one.
* :class:`RedisSessions` (``redis``): the cookie holds only a random session id (256
  bits, encrypted like any session cookie, so it cannot be forged or altered). The
  session is in Redis, encrypted with the session keys, for ``session.max_age``
  seconds from its last refresh. The id never changes, so the cookie never churns: a
  copied cookie, or curl with a read-only jar, keeps working for the refresh token's
  lifetime, and logout deletes the session for every replica at once.

Either way, a session of a user who removed the app (``app_deauthorized``) and began
before that is over: every read checks :mod:`proxy.session.revocations`, and
:meth:`SessionStore.end_user` records the revocation (and, in Redis, deletes the user's
sessions through an index of them by user id).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, replace
from typing import Protocol

from aiohttp import web
from aiohttp_session import get_session, new_session
from cryptography.fernet import MultiFernet

from proxy.errors import RefreshRejected, SessionRevoked, SessionStoreUnavailable
from proxy.redis.client import SharedStore
from proxy.redis.lock import RedisLock
from proxy.redis.tracking import Tracking
from proxy.session.cookie import (
    DECRYPTED_CACHE_SIZE,
    ChunkedCookieStorage,
    start_session,
)
from proxy.session.lru import Lru
from proxy.session.model import SessionData
from proxy.session.revocations import Revocations
from proxy.tokens.coordination import Outcome, RefreshCall
from proxy.tokens.model import Tokens
from proxy.tokens.sealing import seal, unseal

log = logging.getLogger(__name__)

#: Random bytes in a server-side session id.
SESSION_ID_BYTES = 32
#: Sessions kept in memory per process while Redis tracks them (see RedisSessions).
KNOWN_SESSIONS = 100_000
#: Where the id sits in the (encrypted) cookie's data.
_ID_FIELD = "sid"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A request's session, and for a server-side session its id."""

    data: SessionData
    id: str | None = None


class SessionStore(Protocol):
    """How handlers read, begin, update and end sessions. Reading and updating take
    the request's ``Cookie`` header, so that either transport can call them."""

    async def load(self, cookie_header: str) -> SignedIn | None:
        """The session in a request's ``Cookie`` header, or ``None`` when signed out."""

    def read_now(self, cookie_header: str) -> SignedIn | None:
        """The session, if it is known without waiting for anything (the front's lane
        takes a request with it); ``None`` means "ask :meth:`load`"."""

    async def start(self, request: web.Request, data: SessionData) -> None:
        """A brand-new session for a fresh sign-in (never reusing one: no fixation)."""

    def keep(
        self,
        signed_in: SignedIn,
        tokens: Tokens,
        *,
        cookie_header: str,
        forwarded_proto: str | None,
    ) -> list[str]:
        """Record refreshed ``tokens``; the ``Set-Cookie`` values the answer must carry."""

    async def end(self, request: web.Request, signed_in: SignedIn | None) -> None:
        """Sign out: the session is gone, and the response clears its cookie."""

    async def end_user(self, user_id: str, at: float) -> None:
        """End every session of ``user_id`` that began at or before ``at`` (unix
        seconds), on every replica: the user removed the app."""


class CookieSessions:
    """The whole session in its encrypted cookie (``session.store: cookie``)."""

    def __init__(self, storage: ChunkedCookieStorage, revocations: Revocations) -> None:
        self._storage = storage
        self._revocations = revocations
        #: Parsed sessions by cookie value: the same value always holds the same session.
        self._parsed: Lru[str, SignedIn] = Lru(DECRYPTED_CACHE_SIZE)

    async def load(self, cookie_header: str) -> SignedIn | None:
        return self.read(cookie_header)

    def read_now(self, cookie_header: str) -> SignedIn | None:
        return self.read(cookie_header, quiet=True)

    def read(self, cookie_header: str, *, quiet: bool = False) -> SignedIn | None:
        """:meth:`load`, without waiting for anything (the front's lane decides with it
        whether to take a request). ``quiet``: a cookie that fails to decrypt is not
        logged or counted, and a revoked session is ``None`` (not
        :class:`SessionRevoked`): it is dealt with where the request goes next."""
        stored = self._storage.stored(cookie_header, quiet=quiet)
        if stored is None:
            return None
        value, contents = stored
        signed_in = self._parsed.get(value)
        if signed_in is None:
            data = SessionData.from_json(contents)
            if data is None:
                return None
            signed_in = SignedIn(data)
            self._parsed.put(value, signed_in)
        data = signed_in.data
        if self._revocations.revoked(data.user.id, data.signed_in_at):
            if quiet:
                return None
            raise SessionRevoked()
        return signed_in

    async def start(self, request: web.Request, data: SessionData) -> None:
        await start_session(request, data)

    def keep(
        self,
        signed_in: SignedIn,
        tokens: Tokens,
        *,
        cookie_header: str,
        forwarded_proto: str | None,
    ) -> list[str]:
        data = replace(signed_in.data, tokens=tokens)
        value = self._storage.resealed(cookie_header, data.to_json())
        if value is None:
            return []
        return self._storage.set_cookie_headers(
            value, forwarded_proto=forwarded_proto, cookie_header=cookie_header
        )

    async def end(self, request: web.Request, signed_in: SignedIn | None) -> None:
        (await get_session(request)).invalidate()

    async def end_user(self, user_id: str, at: float) -> None:
        await self._revocations.revoke(user_id, at)


class RedisSessions:
    """Sessions in Redis behind an opaque id in the cookie (``session.store: redis``).

    It is also the :class:`~proxy.tokens.coordination.Coordinator` for its sessions: a
    refresh takes the session's lock, reads the session again, and calls Zoom only if
    no other replica has refreshed it meanwhile.
    """

    def __init__(
        self,
        store: SharedStore,
        storage: ChunkedCookieStorage,
        fernet: MultiFernet,
        *,
        max_age: int,
        lock_ttl: float,
        revocations: Revocations,
        tracking: Tracking | None = None,
    ) -> None:
        self._store = store
        self._revocations = revocations
        #: Redis's word on which sessions changed: while it is followed, sessions read
        #: are kept in :attr:`_known` until Redis says they changed.
        self._tracking = tracking
        self._known: Lru[str, SessionData] = Lru(KNOWN_SESSIONS)
        #: Counts what Redis said changed: a session read while it moved is not kept,
        #: as its change may have been told before the read's answer came.
        self._changes = 0
        self._storage = storage
        self._fernet = fernet
        self._max_age = max_age
        self._lock_ttl = lock_ttl
        #: Sessions already decrypted, by their sealed value: the same bytes always
        #: open to the same session, and Fernet plus JSON cost more than the Redis GET.
        self._opened: Lru[bytes, SessionData] = Lru(DECRYPTED_CACHE_SIZE)

    def _key(self, session_id: str) -> str:
        return self._store.key("session", session_id)

    def _user_key(self, user_id: str) -> str:
        """The set of a user's session ids (each may have expired since)."""
        return self._store.key("user-sessions", user_id)

    @property
    def key_prefix(self) -> str:
        """The prefix of every session's key, for :class:`Tracking`."""
        return self._key("")

    async def following(self) -> None:
        """Return once Redis's changes to sessions are followed (sessions read from
        then on are held in memory); at once without tracking."""
        if self._tracking is not None:
            await self._tracking.until_live()

    def forget(self, keys: list[str] | None) -> None:
        """Redis says these keys changed (``None``: maybe any): drop their sessions."""
        self._changes += 1
        if keys is None:
            self._known.clear()
            return
        prefix = self.key_prefix
        for key in keys:
            if key.startswith(prefix):
                self._known.pop(key[len(prefix) :])

    async def read(self, session_id: str) -> SessionData | None:
        changes = self._changes
        value = await self._store.get(self._key(session_id))
        data = None if value is None else self._open(value)
        tracking = self._tracking
        if data is not None and tracking is not None and tracking.live and changes == self._changes:
            self._known.put(session_id, data)
        return data

    def read_now(self, cookie_header: str) -> SignedIn | None:
        if self._tracking is None or not self._tracking.live:
            return None
        session_id = self._session_id(cookie_header, quiet=True)
        data = None if session_id is None else self._known.get(session_id)
        if data is None or self._revocations.revoked(data.user.id, data.signed_in_at):
            return None
        return SignedIn(data, id=session_id)

    def _session_id(self, cookie_header: str, *, quiet: bool = False) -> str | None:
        stored = self._storage.stored(cookie_header, quiet=quiet)
        session_id = None if stored is None else stored[1].get(_ID_FIELD)
        return session_id if isinstance(session_id, str) and session_id else None

    def _open(self, value: bytes) -> SessionData | None:
        session = self._opened.get(value)
        if session is not None:
            return session
        data = unseal(self._fernet, value)
        session = None if data is None else SessionData.from_json(data)
        if session is not None:
            self._opened.put(value, session)
        return session

    async def _write(self, session_id: str, data: SessionData) -> None:
        sealed = seal(self._fernet, data.to_json())
        self._known.pop(session_id)  # Redis will say so too; this replica knows already
        await self._store.set(self._key(session_id), sealed, ttl=self._max_age)

    async def load(self, cookie_header: str) -> SignedIn | None:
        known = self.read_now(cookie_header)
        if known is not None:
            return known
        session_id = self._session_id(cookie_header)
        if session_id is None:
            return None
        data = await self.read(session_id)
        if data is None:
            return None
        if self._revocations.revoked(data.user.id, data.signed_in_at):
            raise SessionRevoked()
        return SignedIn(data, id=session_id)

    async def start(self, request: web.Request, data: SessionData) -> None:
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        await self._write(session_id, data)
        await self._store.add_to_set(self._user_key(data.user.id), session_id, ttl=self._max_age)
        session = await new_session(request)
        session[_ID_FIELD] = session_id

    def keep(
        self,
        signed_in: SignedIn,
        tokens: Tokens,
        *,
        cookie_header: str,
        forwarded_proto: str | None,
    ) -> list[str]:
        return []  # the refresh saved them in Redis; the cookie stays as it is

    async def end(self, request: web.Request, signed_in: SignedIn | None) -> None:
        if signed_in is not None and signed_in.id is not None:
            self._known.pop(signed_in.id)
            await self._store.delete(self._key(signed_in.id))
        (await get_session(request)).invalidate()

    async def end_user(self, user_id: str, at: float) -> None:
        # The revocation also covers a session the index does not list (one begun
        # while this ran, or before the index was kept).
        await self._revocations.revoke(user_id, at)
        index = self._user_key(user_id)
        session_ids = await self._store.members(index)
        for session_id in session_ids:
            self._known.pop(session_id)
        await self._store.delete(*[self._key(session_id) for session_id in session_ids], index)

    async def refresh(self, key: str, tokens: Tokens, call: RefreshCall) -> Outcome:
        lock = RedisLock(
            self._store,
            self._store.key("lock", "session", key),
            ttl=self._lock_ttl,
            wait=self._lock_ttl,
        )
        await lock.acquire()
        try:
            current = await self.read(key)
            if current is None:
                raise RefreshRejected("This session was signed out. Sign in with Zoom again.")
            if current.tokens.refresh_token != tokens.refresh_token:
                return Outcome(current.tokens, shared=True)
            try:
                successor = await call(tokens.refresh_token)
            except RefreshRejected:
                self._known.pop(key)
                with contextlib.suppress(SessionStoreUnavailable):
                    await self._store.delete(self._key(key))
                raise
            try:
                await self._write(key, replace(current, tokens=successor))
            except SessionStoreUnavailable:
                log.error(
                    "refreshed tokens for Zoom user %s could not be saved in Redis; "
                    "the session will end at its next refresh",
                    current.user.id,
                )
            return Outcome(successor)
        finally:
            with contextlib.suppress(SessionStoreUnavailable):
                await lock.release()
