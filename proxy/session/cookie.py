"""What a signed-in session holds, and the encrypted cookies that carry it.

A session is the Zoom token pair plus who the user is. It travels in an
aiohttp-session cookie encrypted with :class:`cryptography.fernet.MultiFernet`: the
first configured key encrypts, every key decrypts, so keys rotate without signing
anyone out. Browsers drop cookies over 4096 bytes, so a long value is split over
numbered cookies (``zoom_proxy``, ``zoom_proxy_1``, ...) and joined on read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, new_session
from aiohttp_session import SessionData as StoredSession
from cryptography.fernet import InvalidToken, MultiFernet

from proxy.session.lru import Lru
from proxy.session.model import SessionData

log = logging.getLogger(__name__)

#: A Set-Cookie header must stay within the browsers' 4096-byte limit; this leaves
#: room for the name, the attributes and the expiry date.
COOKIE_BYTES_LIMIT = 4096
_ATTRIBUTES_ALLOWANCE = 160
#: Chunks beyond this are never read, so a flood of cookies costs nothing.
MAX_CHUNKS = 8
#: Decrypted sessions kept per process, keyed by cookie value, so a busy client pays
#: for Fernet and JSON once rather than on every request.
DECRYPTED_CACHE_SIZE = 4096
#: ``Cookie`` headers whose session is known (see :meth:`ChunkedCookieStorage.stored`).
#: Fewer than the sessions: a header may carry a site's other cookies too (up to
#: aiohttp's 8 KiB field limit), so these bound the memory at 8 MiB.
KNOWN_HEADERS = 1024


class ChunkedCookieStorage(AbstractStorage):
    """aiohttp-session storage: MultiFernet-encrypted JSON, split over numbered cookies.

    A cookie that cannot be decrypted (tampered, truncated, expired, old key) loads as
    a fresh, empty session: the user is signed out, never shown an error.
    """

    def __init__(
        self,
        fernet: MultiFernet,
        *,
        cookie_name: str,
        max_age: int,
        secure: bool,
        samesite: str,
        trust_forwarded_proto: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            cookie_name=cookie_name,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=True,
            samesite=samesite,
        )
        self._fernet = fernet
        self._chunk_size = COOKIE_BYTES_LIMIT - _ATTRIBUTES_ALLOWANCE - len(cookie_name)
        self._chunk_names = [cookie_name] + [f"{cookie_name}_{i}" for i in range(1, MAX_CHUNKS)]
        self._decrypted: Lru[str, tuple[int, dict[str, Any]]] = Lru(DECRYPTED_CACHE_SIZE)
        #: What :meth:`stored` found in a ``Cookie`` header, and until when it holds.
        self._known_headers: Lru[str, tuple[int, tuple[str, Mapping[str, Any]]]]
        self._known_headers = Lru(KNOWN_HEADERS)
        self._lifetime = max_age
        self._clock = clock
        self._trust_forwarded_proto = trust_forwarded_proto
        #: Called for every cookie that fails to decrypt (a metric, say).
        self.on_decode_failure: Callable[[], None] = lambda: None

    def chunk_name(self, index: int) -> str:
        return self._chunk_names[index]

    def chunks(self, cookie_header: str) -> list[tuple[str, str]]:
        """The session cookies in a ``Cookie`` header, in order, as (name, value).

        Read straight from the ``Cookie`` header: on the hot path, parsing every other
        cookie of the site into a mapping costs more than decrypting a cached session.
        Our values are unpadded base64 and need no quoting; quotes a client added
        anyway are removed.
        """
        ours: dict[str, str] = {}
        for part in cookie_header.split(";"):
            name, equals, value = part.strip().partition("=")
            if equals and name.startswith(self.cookie_name):
                ours.setdefault(name, value.strip('"'))
        found: list[tuple[str, str]] = []
        for name in self._chunk_names:
            chunk = ours.get(name)
            if chunk is None:
                break
            found.append((name, chunk))
        return found

    def load_cookie(self, request: web.Request) -> str | None:
        return self._joined(request.headers.get("Cookie", ""))

    def _joined(self, cookie_header: str) -> str | None:
        value = "".join([chunk for _, chunk in self.chunks(cookie_header)])
        # Stored without base64 padding, which would make cookie libraries quote it.
        return value + "=" * (-len(value) % 4) if value else None

    async def load_session(self, request: web.Request) -> Session:
        value = self.load_cookie(request)
        data = None if value is None else self._decrypt(value)
        return Session(
            None, data=cast(StoredSession | None, data), new=data is None, max_age=self.max_age
        )

    def stored(
        self, cookie_header: str, *, quiet: bool = False
    ) -> tuple[str, Mapping[str, Any]] | None:
        """The session's contents in a ``Cookie`` header and the cookie value they came
        from, read-only.

        The hot path only reads a session, so this skips aiohttp-session's ``Session``
        object; ``get_session`` builds one (from the same cache) when a handler changes
        the session. ``quiet``: a cookie that fails to decrypt is not reported (the
        caller leaves the request to a path that will report it).
        """
        # A client sends the same header request after request: finding the session in
        # it again (parsing it, joining the chunks, hashing a 2 KB value twice) was
        # about 4% of a forwarded call's CPU. Only a header that held a session is
        # remembered, and only while that session's cookie is within its lifetime.
        known = self._known_headers.get(cookie_header)
        if known is not None:
            if self._clock() <= known[0]:
                return known[1]
            self._known_headers.pop(cookie_header)
        value = self._joined(cookie_header)
        opened = None if value is None else self._open(value, quiet=quiet)
        if value is None or opened is None:
            return None
        good_until = self._good_until(*opened)
        contents = opened[1].get("session")
        if (
            good_until is None
            or self._clock() > good_until
            or not isinstance(contents, dict)
            or not contents
        ):
            return None
        found = (value, contents)
        self._known_headers.put(cookie_header, (good_until, found))
        return found

    def _good_until(self, issued_at: int, data: Mapping[str, Any]) -> int | None:
        """Until when a cookie's session holds: ``max_age`` from sign-in
        (aiohttp-session's ``created``, which a refresh keeps, as aiohttp-session's
        Session rules), and from the sealing of this very cookie; ``None`` without a
        sign-in time."""
        created = data.get("created")
        return min(issued_at, created) + self._lifetime if isinstance(created, int) else None

    def _decrypt(self, value: str) -> dict[str, Any] | None:
        """The stored data of a cookie value, or ``None``; cached, expiry still enforced."""
        opened = self._open(value)
        return None if opened is None else opened[1]

    def _open(self, value: str, *, quiet: bool = False) -> tuple[int, dict[str, Any]] | None:
        """When a cookie value was sealed, and its stored data; or ``None``."""
        cached = self._decrypted.get(value)
        if cached is not None:
            if self._clock() - cached[0] <= self._lifetime:
                return cached
            self._decrypted.pop(value)
        try:
            token = value.encode("ascii")
            now = int(self._clock())
            data = json.loads(self._fernet.decrypt_at_time(token, self._lifetime, now))
            if not isinstance(data, dict):
                raise ValueError("not a session")
            issued_at = self._fernet.extract_timestamp(token)
        except (InvalidToken, UnicodeError, ValueError):
            if quiet:
                return None
            log.warning("session cookie could not be decrypted; treating the client as signed out")
            self.on_decode_failure()
            return None
        opened = (issued_at, data)
        self._decrypted.put(value, opened)
        return opened

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        value = "" if session.empty else self._seal(self._get_session_data(session))
        self.write_cookies(request, response, value)

    def _seal(self, data: Mapping[str, Any]) -> str:
        plain = json.dumps(data, separators=(",", ":"))
        sealed = self._fernet.encrypt_at_time(plain.encode(), int(self._clock()))
        return sealed.decode("ascii").rstrip("=")

    def resealed(self, cookie_header: str, contents: Mapping[str, Any]) -> str | None:
        """The cookie value for the session in ``cookie_header`` with new ``contents``,
        its sign-in time kept (``max_age`` counts from it); ``None`` if there is none."""
        value = self._joined(cookie_header)
        data = None if value is None else self._decrypt(value)
        if data is None:
            return None
        return self._seal({"created": data.get("created"), "session": dict(contents)})

    def secure(self, forwarded_proto: str | None) -> bool:
        """``Secure`` per config, and also when a trusted front proxy says it spoke https
        (given the request's ``X-Forwarded-Proto``)."""
        return bool(self.cookie_params["secure"]) or (
            self._trust_forwarded_proto and (forwarded_proto or "").lower() == "https"
        )

    def write_cookies(self, request: web.Request, response: web.StreamResponse, value: str) -> None:
        """:meth:`set_cookie_headers`, onto an aiohttp response."""
        self._set_cookies(
            response,
            value,
            forwarded_proto=request.headers.get("X-Forwarded-Proto"),
            cookie_header=request.headers.get("Cookie", ""),
        )

    def answer_cookies(
        self,
        refreshed: Sequence[str],
        *,
        ends_session: bool,
        cookie_header: str,
        forwarded_proto: str | None,
    ) -> Sequence[str]:
        """The ``Set-Cookie`` values an answer carries: the session's ``refreshed``
        cookie, or cookies that clear the session when the answer ``ends_session`` (a
        refused refresh)."""
        if ends_session:
            return self.set_cookie_headers(
                "", forwarded_proto=forwarded_proto, cookie_header=cookie_header
            )
        return refreshed

    def set_cookie_headers(
        self, value: str, *, forwarded_proto: str | None, cookie_header: str
    ) -> list[str]:
        """The ``Set-Cookie`` values that set ``value`` over as many chunks as it needs
        and expire the ones it no longer uses, given the request's ``Cookie`` header."""
        # aiohttp formats the attributes; this response is never sent.
        response = web.StreamResponse()
        self._set_cookies(
            response, value, forwarded_proto=forwarded_proto, cookie_header=cookie_header
        )
        return [morsel.OutputString() for morsel in response.cookies.values()]

    def _set_cookies(
        self,
        response: web.StreamResponse,
        value: str,
        *,
        forwarded_proto: str | None,
        cookie_header: str,
    ) -> None:
        sent = {part.partition("=")[0].strip() for part in cookie_header.split(";")}
        secure = self.secure(forwarded_proto)
        chunks = [value[i : i + self._chunk_size] for i in range(0, len(value), self._chunk_size)]
        params = self.cookie_params
        for index, chunk in enumerate(chunks):
            response.set_cookie(
                self.chunk_name(index),
                chunk,
                max_age=self.max_age,
                path=params["path"],
                secure=secure,
                httponly=True,
                samesite=params["samesite"],
            )
        for index in range(len(chunks), MAX_CHUNKS):
            name = self.chunk_name(index)
            if name in sent:
                response.del_cookie(
                    name,
                    path=params["path"],
                    secure=secure,
                    httponly=True,
                    samesite=params["samesite"],
                )


async def start_session(request: web.Request, data: SessionData) -> None:
    """Begin a brand-new session (never reuse one from before sign-in: no fixation)."""
    session = await new_session(request)
    session.update(data.to_json())
