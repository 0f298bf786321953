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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

#: A Set-Cookie header must stay within the browsers' 4096-byte limit; this leaves
#: room for the name, the attributes and the expiry date.
COOKIE_BYTES_LIMIT = 4096
_ATTRIBUTES_ALLOWANCE = 160
#: Chunks beyond this are never read, so a flood of cookies costs nothing.
MAX_CHUNKS = 8


@dataclass(frozen=True, slots=True)
class User:
    """The Zoom user a session belongs to, as ``GET /users/me`` describes them."""

    id: str
    email: str
    first_name: str
    last_name: str
    account_id: str

    @classmethod
    def from_zoom(cls, data: Mapping[str, Any]) -> User:
        """Build from Zoom's JSON; raises ``ValueError`` when it lacks an id."""
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("Zoom's user has no id")
        return cls(
            id=user_id,
            **{name: _text(data.get(name)) for name in ("email", "first_name", "last_name")},
            account_id=_text(data.get("account_id")),
        )


@dataclass(frozen=True, slots=True)
class Tokens:
    """One Zoom token pair; ``expires_at`` is the access token's expiry in unix seconds."""

    access_token: str
    refresh_token: str
    expires_at: float
    scope: str

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) <= seconds

    def __repr__(self) -> str:
        return f"Tokens(expires_at={self.expires_at!r}, scope={self.scope!r})"


@dataclass(frozen=True, slots=True)
class SessionData:
    """Everything a session cookie holds."""

    tokens: Tokens
    user: User

    def to_json(self) -> dict[str, Any]:
        return {"tokens": asdict(self.tokens), "user": asdict(self.user)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionData | None:
        """Parse a stored session; ``None`` for anything malformed (that is "signed out")."""
        try:
            tokens, user = data["tokens"], data["user"]
            return cls(
                tokens=Tokens(
                    access_token=_required_text(tokens["access_token"]),
                    refresh_token=_required_text(tokens["refresh_token"]),
                    expires_at=float(tokens["expires_at"]),
                    scope=_text(tokens["scope"]),
                ),
                user=User(**{name: _text(user[name]) for name in User.__slots__}),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _required_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("empty")
    return value


def make_fernet(keys: Iterable[str]) -> MultiFernet:
    """The cipher for every cookie the proxy sets: the first key encrypts, all decrypt."""
    return MultiFernet([Fernet(key) for key in keys])


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

    def chunk_name(self, index: int) -> str:
        return self.cookie_name if index == 0 else f"{self.cookie_name}_{index}"

    def chunks(self, request: web.Request) -> list[tuple[str, str]]:
        """The session cookies this request carries, in order, as (name, value)."""
        found: list[tuple[str, str]] = []
        for index in range(MAX_CHUNKS):
            name = self.chunk_name(index)
            value = request.cookies.get(name)
            if value is None:
                break
            found.append((name, value))
        return found

    def load_cookie(self, request: web.Request) -> str | None:
        return "".join(value for _, value in self.chunks(request)) or None

    async def load_session(self, request: web.Request) -> Session:
        value = self.load_cookie(request)
        if value is None:
            return Session(None, data=None, new=True, max_age=self.max_age)
        try:
            data = json.loads(self._fernet.decrypt(value.encode("ascii"), ttl=self.max_age))
        except (InvalidToken, UnicodeError, ValueError):
            log.warning("session cookie could not be decrypted; treating the client as signed out")
            return Session(None, data=None, new=True, max_age=self.max_age)
        return Session(None, data=data, new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        value = ""
        if not session.empty:
            plain = json.dumps(self._get_session_data(session), separators=(",", ":"))
            value = self._fernet.encrypt(plain.encode()).decode("ascii")
        self.write_cookies(request, response, value)

    def write_cookies(self, request: web.Request, response: web.StreamResponse, value: str) -> None:
        """Set ``value`` over as many chunks as it needs and expire the ones it no longer uses."""
        chunks = [value[i : i + self._chunk_size] for i in range(0, len(value), self._chunk_size)]
        params = self.cookie_params
        for index, chunk in enumerate(chunks):
            response.set_cookie(
                self.chunk_name(index),
                chunk,
                max_age=self.max_age,
                path=params["path"],
                secure=params["secure"],
                httponly=True,
                samesite=params["samesite"],
            )
        for index in range(len(chunks), MAX_CHUNKS):
            name = self.chunk_name(index)
            if name in request.cookies:
                response.del_cookie(
                    name,
                    path=params["path"],
                    secure=params["secure"],
                    httponly=True,
                    samesite=params["samesite"],
                )


async def load_session_data(request: web.Request) -> SessionData | None:
    """The signed-in session of this request, or ``None`` when signed out."""
    session = await get_session(request)
    return None if session.empty else SessionData.from_json(session)


async def start_session(request: web.Request, data: SessionData) -> None:
    """Begin a brand-new session (never reuse one from before sign-in: no fixation)."""
    session = await new_session(request)
    session.update(data.to_json())


async def replace_session(request: web.Request, data: SessionData | None) -> Session:
    """Change this request's session; the caller saves it before preparing a stream."""
    session = await get_session(request)
    session.clear()
    if data is not None:
        session.update(data.to_json())
    else:
        session.invalidate()
    return session
