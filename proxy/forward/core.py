"""The ``/api`` forwarding core: one request's way to Zoom and back, whichever
transport it arrived on.

Both transports drive :meth:`Forwarder.forward`: aiohttp's handler
(:mod:`proxy.forward.handler`) and the front's lane (:mod:`proxy.forward.lane`). They
parse the request into an :class:`ApiCall`, hand over its body, and write what the
core gives their :class:`Answer`; everything else is decided here, once:

* who the caller is: the session in the ``Cookie`` header, or a service caller's key in
  ``Authorization`` (when ``service`` is configured), admitted by its allow rules and rate;
* where the call goes (:func:`upstream_target`: byte for byte under Zoom's base path);
* which tokens it carries (the session's, fresh or refreshed before expiry; or the
  account's, minted);
* what Zoom's 401 means: when it is about the token (:func:`about_the_token`), one
  refresh, and one replay when the body was kept whole; else nothing but itself;
* how the answer is planned (Zoom's headers, the session's new cookie, the body whole
  or streamed).

A :class:`ProxyError` raised here reaches the transport, which renders it with
:func:`proxy.errors.error_answer` and the cookies in :attr:`ApiCall.cookies`: Zoom
has already spent a refreshed session's old refresh token, so the new one reaches the
client whatever the answer, an error included.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from proxy.callers.registry import Callers
from proxy.config import Settings
from proxy.errors import ClientTooSlow, Unauthenticated, UnsafePath, UpstreamUnreachable
from proxy.forward.headers import headers_for_client, headers_for_zoom
from proxy.http.client import Body, BodyBrokeOff, Pool, Response
from proxy.observe.logs import RequestRecord
from proxy.observe.metrics import Metrics
from proxy.session.store import SessionStore, SignedIn
from proxy.tokens.account import AccountTokens
from proxy.tokens.model import Tokens
from proxy.tokens.refresh import Refresher
from proxy.web.untrusted import is_safe_api_path

API_PREFIX = "/api/"
#: Answers up to this size are read whole and written with their head at once.
SMALL_BODY = 1 << 16
#: Zoom's error code for an invalid or expired access token.
_TOKEN_ERROR_CODE = "124"


@functools.lru_cache(maxsize=4096)
def upstream_target(base_path: str, raw_path: str) -> str:
    """The request target at Zoom for a raw ``/api/...`` one, or :class:`UnsafePath`.

    Cached: clients call the same few paths over and over.
    """
    if not raw_path.startswith(API_PREFIX):
        raise UnsafePath()
    path, question, query = raw_path[len(API_PREFIX) :].partition("?")
    # A "#" would end the URL upstream and silently drop the rest of the query.
    if not is_safe_api_path(path) or any(
        c == "#" or ord(c) < 0x21 or ord(c) == 0x7F for c in query
    ):
        raise UnsafePath()
    return f"{base_path}/{path}{question}{query}"


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A request body: kept whole when small enough to replay, else streamed once
    (with the client's ``Content-Length`` when it gave one, else chunked)."""

    replay: bytes | None
    stream: Body = None
    length: int | None = None

    @property
    def replayable(self) -> bool:
        return self.replay is not None

    def payload(self) -> Body:
        return self.stream if self.replay is None else self.replay


NO_BODY = RequestBody(replay=b"")


class BodyReader(Protocol):
    """A request body as it arrives: aiohttp's, or the front's."""

    async def readany(self) -> bytes:
        """Some of the body, or ``b""`` at its end."""


async def read_some(reader: BodyReader, stall_limit: float) -> bytes:
    """The next piece of a body; :class:`ClientTooSlow` after ``stall_limit`` seconds
    of silence, so a client cannot hold a connection to Zoom forever."""
    try:
        async with asyncio.timeout(stall_limit):
            return await reader.readany()
    except TimeoutError as exc:
        raise ClientTooSlow() from exc


async def stream_body(head: bytes, rest: BodyReader, stall_limit: float) -> AsyncIterator[bytes]:
    """``head``, then ``rest`` as it arrives (see :func:`read_some`)."""
    if head:
        yield head
    while chunk := await read_some(rest, stall_limit):
        yield chunk


class ApiCall:
    """One ``/api`` request while it is handled, as the transport parsed it."""

    __slots__ = (
        "authorization",
        "connection",
        "cookie_header",
        "cookies",
        "forwarded_proto",
        "headers",
        "method",
        "raw_target",
        "record",
        "signed_in",
        "target",
    )

    def __init__(
        self,
        method: str,
        raw_target: str,
        headers: Iterable[tuple[str, str]],
        connection: Iterable[str],
        *,
        cookie_header: str,
        forwarded_proto: str | None,
        record: RequestRecord,
        signed_in: SignedIn | None = None,
        target: str | None = None,
        authorization: str | None = None,
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        #: As the client sent them, in order; and its ``Connection`` header's values.
        self.headers = headers
        self.connection = connection
        self.cookie_header = cookie_header
        self.forwarded_proto = forwarded_proto
        self.record = record
        #: The session, when the transport has already read it.
        self.signed_in = signed_in
        #: Where it goes at Zoom, when the transport has already checked its path.
        self.target = target
        #: The client's ``Authorization`` header: a service caller's key, if any.
        self.authorization = authorization
        #: ``Set-Cookie`` values the answer carries, whatever it is: the session's new
        #: cookie once its tokens are refreshed.
        self.cookies: list[str] = []


class Answer(Protocol):
    """Where the core writes Zoom's answer: the transport's response to the client.

    ``headers`` are Zoom's, as they may reach the client (``Content-Length`` included),
    then the session's ``Set-Cookie``; the transport adds its own and frames the body.
    """

    def whole(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """The whole answer, at once (``Content-Length`` is the body's)."""

    async def start(
        self, status: int, headers: list[tuple[str, str]], *, streamed: bool
    ) -> asyncio.Transport | None:
        """Send the head of an answer whose body follows (``streamed``: of a known
        length, else of none). Returns the client's transport, for Zoom's bytes to go
        straight to it while it keeps up, if the transport allows that."""

    async def write(self, chunk: bytes) -> None:
        """Part of the body, once the client has taken most of what came before."""

    async def end(self) -> None:
        """The body is complete."""

    def cut_off(self) -> None:
        """End the connection with the answer incomplete, so the client can tell."""


class Forwarder:
    """Forwards ``/api`` calls to Zoom with the caller's tokens."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: SessionStore,
        refresher: Refresher,
        upstream: Pool,
        metrics: Metrics,
        callers: Callers | None = None,
        account: AccountTokens | None = None,
    ) -> None:
        self._base_path = settings.zoom.api_base_path
        self._trust_forwarded = settings.trust_forwarded_headers
        self._sessions = sessions
        self._refresher = refresher
        self._upstream = upstream
        self._metrics = metrics
        #: Service callers (``service``), and the account token they share.
        self._callers = callers
        self._account = account
        #: Whether users sign in: without, every call is a caller's.
        self._users = settings.users_sign_in

    def target(self, raw_target: str) -> str:
        """Where ``raw_target`` goes at Zoom, or :class:`UnsafePath`."""
        return upstream_target(self._base_path, raw_target)

    async def forward(self, call: ApiCall, body: RequestBody, answer: Answer) -> None:
        """Send ``call`` to Zoom and its answer to ``answer``."""
        target = call.target or self.target(call.raw_target)
        signed_in = call.signed_in
        if (
            signed_in is not None
            and call.authorization is None
            and self._refresher.usable(signed_in.data.tokens)
        ):
            # The lane has read the session and its tokens need nothing: the common
            # case, kept free of another coroutine.
            call.record.user_id = signed_in.data.user.id
            tokens = signed_in.data.tokens
        else:
            tokens, signed_in = await self.credentials(call)
        upstream = await self._send(call, target, tokens, body)
        try:
            seen = None
            if upstream.status == 401:
                seen = None if upstream.bodiless else await _read_401(upstream)
                if about_the_token(seen):
                    tokens = await self.renew(call, tokens, signed_in)
                    if body.replayable:
                        upstream.release()
                        upstream = await self._send(call, target, tokens, body)
                        seen = None
            headers = headers_for_client(upstream.headers)
            if call.cookies:
                headers += [("Set-Cookie", value) for value in call.cookies]
            await relay(upstream, answer, headers, seen)
        finally:
            upstream.release()

    async def credentials(
        self, call: ApiCall, *, download: bool = False
    ) -> tuple[Tokens, SignedIn | None]:
        """Who makes ``call``, and the tokens to send for it: a service caller's key
        (when ``service`` is on and ``Authorization`` is sent, or always without the user
        app), admitted by its rules (or, for a ``download``, its ``downloads`` flag) and
        its rate, with the account's token; else the session, with its tokens refreshed
        if they expire within the margin (and ``None`` for no session)."""
        callers = self._callers
        if callers is not None and (call.authorization is not None or not self._users):
            caller = callers.identify(call.authorization or "")
            call.record.caller = caller.name
            if download:
                caller.admit_download()
            else:
                caller.admit(call.method, call.raw_target[len(API_PREFIX) - 1 :].partition("?")[0])
            assert self._account is not None
            return await self._account.fresh(), None
        signed_in = call.signed_in or await self._sessions.load(call.cookie_header)
        if signed_in is None:
            raise Unauthenticated()
        call.record.user_id = signed_in.data.user.id
        tokens = signed_in.data.tokens
        if not self._refresher.usable(tokens):
            tokens = await self._refresher.fresh(tokens, session_id=signed_in.id)
            self._keep(call, signed_in, tokens)
        return tokens, signed_in

    async def renew(self, call: ApiCall, tokens: Tokens, signed_in: SignedIn | None) -> Tokens:
        """New tokens after Zoom refused ``tokens`` (code 124): the session's, refreshed
        and kept; or, for a service caller, the account's, minted again."""
        if signed_in is None:
            assert self._account is not None
            return await self._account.renew(tokens)
        tokens = await self._refresher.after_401(tokens, session_id=signed_in.id)
        self._keep(call, signed_in, tokens)
        return tokens

    def _keep(self, call: ApiCall, signed_in: SignedIn, tokens: Tokens) -> None:
        """Record refreshed tokens in the session at once, and its new cookie in the call."""
        if tokens != signed_in.data.tokens:
            call.cookies[:] = self._sessions.keep(
                signed_in,
                tokens,
                cookie_header=call.cookie_header,
                forwarded_proto=call.forwarded_proto,
            )

    async def _send(
        self, call: ApiCall, target: str, tokens: Tokens, body: RequestBody
    ) -> Response:
        headers = headers_for_zoom(
            call.headers,
            call.connection,
            access_token=tokens.access_token,
            trust_forwarded=self._trust_forwarded,
        )
        started = time.perf_counter()
        try:
            upstream = await self._upstream.request(
                call.method, target, headers, body.payload(), content_length=body.length
            )
        finally:  # failures too: a slow timeout is exactly what the histogram must show
            self._metrics.observe_upstream_latency(started)
        call.record.upstream_status = upstream.status
        return upstream


FORWARDER = web.AppKey("forwarder", Forwarder)


def about_the_token(body: bytes | None) -> bool:
    """Whether a 401 whose body is ``body`` (``None``: none read) is about the access
    token, so that a refresh may cure it: Zoom's JSON error with ``code`` 124 ("Access
    token is expired", or invalid), or no such JSON at all. Any other code (1010, "User
    does not belong to this account") is Zoom's word on the resource, which new tokens
    would not change."""
    try:
        error = json.loads(body) if body else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return True
    if not isinstance(error, dict) or "code" not in error:
        return True
    return str(error["code"]) == _TOKEN_ERROR_CODE


async def _read_401(upstream: Response) -> bytes | None:
    """A 401's body, for :func:`about_the_token`, if it is small enough to be Zoom's
    JSON error (a larger one is streamed on as it is)."""
    try:
        return await upstream.read_at_most(SMALL_BODY)
    except BodyBrokeOff as exc:
        raise UpstreamUnreachable("Zoom's answer broke off.") from exc


async def relay(
    upstream: Response,
    answer: Answer,
    headers: list[tuple[str, str]],
    whole: bytes | None = None,
) -> None:
    """An upstream answer to the client, with ``headers``: whole when small (or already
    read, ``whole``), else streamed as it arrives."""
    if whole is not None:
        answer.whole(upstream.status, headers, whole)
        return
    length = upstream.content_length
    if not upstream.bodiless and length is not None and length <= SMALL_BODY:
        answer.whole(
            upstream.status, headers, upstream.body_if_complete() or await whole_body(upstream)
        )
        return
    sink = await answer.start(upstream.status, headers, streamed=not upstream.bodiless)
    if upstream.bodiless:
        await answer.end()
        return
    if length is not None and sink is not None:
        # Zoom's bytes are exactly what the client must get: they skip the coroutine.
        upstream.stream_to(sink)
    try:
        async for chunk in upstream.chunks():
            await answer.write(chunk)
    except ConnectionError:  # Zoom broke off, or the client left
        answer.cut_off()
        return
    await answer.end()


async def whole_body(upstream: Response) -> bytes:
    """A small body of known length that has not all arrived with the headers."""
    try:
        return await upstream.read()
    except BodyBrokeOff as exc:
        raise UpstreamUnreachable("Zoom's answer broke off.") from exc
