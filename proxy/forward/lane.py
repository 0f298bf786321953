"""``/api/*`` answered on the connection's first reader (:mod:`proxy.http.front`), without
aiohttp's server: the hot path.

The lane takes a request only when answering it needs nothing but a read-only look
at the session and one call to Zoom:

* ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` on a safe ``/api/`` path;
* a cookie session whose tokens need no refresh (and have no successor);
* no ``Origin``, and ``Sec-Fetch-Site`` absent, ``same-origin`` or ``none``: nothing to
  screen, no CORS to grant;
* not a browser navigation (those get HTML errors and sign-in redirects);
* no ``Expect`` but ``100-continue``; a body, if any, framed by ``Content-Length``.

Anything else goes to aiohttp. So does a request Zoom answers with 401 when its body
could be kept whole (up to ``upstream.max_replay_body``): :func:`proxy.forward.handler.forward`
refreshes and sends it again. A larger body streams through as it arrives and cannot be
sent again; on a 401 the lane refreshes itself and passes the 401 on with the new
session, as ``forward`` would. What the lane answers, it answers as ``forward`` and its
middlewares would: the same headers each way, the same error bodies, request id,
metrics, access-log line and in-flight count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time

from proxy.errors import ClientTooSlow, ProxyError, RefreshRejected, UnsafePath
from proxy.forward.handler import SMALL_BODY, RefusedByZoom, upstream_target, whole_body
from proxy.forward.headers import SERVER, headers_for_client, headers_for_zoom
from proxy.http.body import BodyStream, ClientLeft
from proxy.http.client import Response
from proxy.http.front import Handover, Job, Reply
from proxy.http.heads import Head
from proxy.observe.lifecycle import LIFECYCLE
from proxy.observe.logs import accepted_request_id, client_address, current_request_id, log_access
from proxy.observe.metrics import METRICS
from proxy.session.model import SessionData
from proxy.session.store import CookieSessions, SignedIn
from proxy.tokens.model import Tokens
from proxy.web.errors import log_refusal, login_url, raw_json_answer, status_line
from proxy.web.keys import REFRESHER, SESSIONS, SETTINGS, STORAGE, UPSTREAM

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})
#: Response headers the lane adds when Zoom sent none, as aiohttp does (Content-Length:
#: its own, for the body actually sent, but Zoom's for a HEAD).
_DEFAULTED = frozenset({"content-length", "date", "server", "content-type"})

_access_log = logging.getLogger("aiohttp.access")


class ApiLane:
    """Takes and answers the plain ``/api/*`` requests of an app with cookie sessions."""

    def __init__(self, app: web.Application, sessions: CookieSessions) -> None:
        settings = app[SETTINGS]
        self.sessions = sessions
        self.storage = app[STORAGE]
        self.refresher = app[REFRESHER]
        self.upstream = app[UPSTREAM]
        self.metrics = app[METRICS]
        self.lifecycle = app[LIFECYCLE]
        self.settings = settings
        #: Bodies up to this size are read whole before forwarding: they can be sent
        #: again after a 401, as ``forward`` would (``upstream.max_replay_body``).
        self.max_whole_body = settings.upstream.max_replay_body

    def take(self, head: Head) -> Job | None:
        first = head.first
        if (
            head.method not in METHODS
            or not head.target.startswith("/api/")
            or "origin" in first
            or first.get("sec-fetch-site", "none") not in _SAME_ORIGIN_FETCH
            or ("expect" in first and not head.expects_continue)
            or "text/html" in first.get("accept", "")
        ):
            return None
        try:
            target = upstream_target(self.settings.zoom.api_base_path, head.target)
        except UnsafePath:
            return None
        # Quiet: a cookie that fails here is reported where the request goes next.
        signed_in = self.sessions.read(first.get("cookie", ""), quiet=True)
        if signed_in is None or not self.refresher.usable(signed_in.data.tokens):
            return None
        return _Call(self, head, target, signed_in)

    def new_cookie(self, head: Head, signed_in: SignedIn, tokens: Tokens) -> list[str]:
        """``Set-Cookie`` values that carry the session with refreshed ``tokens``."""
        cookie_header = head.first.get("cookie", "")
        data = SessionData(tokens=tokens, user=signed_in.data.user)
        value = self.storage.resealed(cookie_header, data.to_json())
        return [] if value is None else self._cookie(head, value)

    def _cookie(self, head: Head, value: str) -> list[str]:
        secure = self.storage.secure_behind(head.first.get("x-forwarded-proto"))
        return self.storage.set_cookie_headers(
            value, secure=secure, cookie_header=head.first.get("cookie", "")
        )

    def refusal(
        self, head: Head, error: ProxyError, request_id: str, cookie: Sequence[str]
    ) -> bytes:
        """The answer for ``error``, as :func:`proxy.web.errors.render_error` gives it
        to a script (the lane takes no browser navigations), with ``cookie``."""
        log_refusal(head.method, head.target, error)
        if isinstance(error, RefreshRejected):  # the session is over: its cookies go
            cookie = self._cookie(head, "")
        extra = [f"Set-Cookie: {value}\r\n" for value in cookie]
        extra.append(f"X-Request-ID: {request_id}\r\nVary: Origin\r\n")
        login = login_url(self.settings.public_url, head.target)
        return raw_json_answer(error, login, extra, close=not head.keep_alive)

    def record(self, call: _Call, seconds: float, peer: str | None, *, access_log: bool) -> None:
        """Metrics, and the access-log line for an answer sent, as the aiohttp path's
        middleware and logger (which logs nothing for a client that left)."""
        head = call.head
        self.metrics.count_answer(head.method, head.target, call.status)
        if access_log and _access_log.isEnabledFor(logging.INFO):
            log_access(
                _access_log,
                method=head.method,
                raw_target=head.target,
                status=call.status,
                seconds=seconds,
                user_id=call.signed_in.data.user.id,
                request_id=call.request_id,
                upstream_status=call.upstream_status,
                remote=client_address(
                    peer,
                    head.first.get("x-forwarded-for"),
                    trusted=self.settings.trust_forwarded_headers,
                ),
            )


@dataclass(slots=True)
class _Call:
    """One request the lane took."""

    lane: ApiLane
    head: Head
    target: str
    signed_in: SignedIn
    request_id: str = "-"
    #: The status answered (500 if it failed or the client left); 0 when handed over,
    #: or when the client stopped mid-body.
    status: int = 500
    upstream_status: int | None = None

    async def __call__(self, body: bytes | BodyStream | None, reply: Reply) -> Handover | None:
        lane = self.lane
        started = asyncio.get_running_loop().time()
        self.request_id = accepted_request_id(self.head.first.get("x-request-id"))
        context = current_request_id.set(self.request_id)
        lane.lifecycle.enter()
        answered = False
        try:
            handover = await self._answer(body, reply)
            answered = True
            return handover
        finally:
            lane.lifecycle.leave()
            if self.status:
                seconds = asyncio.get_running_loop().time() - started
                lane.record(self, seconds, reply.peer, access_log=answered)
            current_request_id.reset(context)

    async def _answer(self, body: bytes | BodyStream | None, reply: Reply) -> Handover | None:
        lane, head = self.lane, self.head
        tokens = self.signed_in.data.tokens
        if body is None:
            self._refuse(reply, ClientTooSlow())
            return None
        try:
            upstream = await self._send(body)
        except ProxyError as error:
            self._refuse(reply, error)
            return None
        except ClientLeft:  # mid-body: there is nobody to answer
            self.status = 0
            reply.close()
            return None
        self.upstream_status = upstream.status
        try:
            cookie: list[str] = []
            if upstream.status == 401:
                if isinstance(body, bytes):
                    self.status = 0  # aiohttp refreshes, and sends it again
                    return Handover(RefusedByZoom(tokens.access_token))
                # Too large to send again: refresh anyway, and pass Zoom's 401 on with
                # the new session (SPEC section 7).
                try:
                    tokens = await lane.refresher.after_401(tokens)
                except ProxyError as error:
                    self._refuse(reply, error)
                    return None
                cookie = lane.new_cookie(head, self.signed_in, tokens)
            self.status = upstream.status
            try:
                await _relay(head, upstream, self.request_id, reply, cookie)
            except ProxyError as error:  # a small body that broke off
                self._refuse(reply, error, cookie)
            return None
        finally:
            upstream.release()

    async def _send(self, body: bytes | BodyStream) -> Response:
        lane, head = self.lane, self.head
        connection = (
            [value for name, value in head.headers if name.lower() == "connection"]
            if "connection" in head.first
            else ()
        )
        headers = headers_for_zoom(
            head.headers,
            connection,
            access_token=self.signed_in.data.tokens.access_token,
            trust_forwarded=lane.settings.trust_forwarded_headers,
        )
        started = time.perf_counter()
        try:
            return await lane.upstream.request(
                head.method, self.target, headers, body, content_length=head.content_length
            )
        finally:
            lane.metrics.observe_upstream_latency(started)

    def _refuse(self, reply: Reply, error: ProxyError, cookie: Sequence[str] = ()) -> None:
        """Answer ``error``; refreshed tokens (``cookie``) reach the client all the same."""
        self.status = error.status
        reply.write(self.lane.refusal(self.head, error, self.request_id, cookie))


async def _relay(
    head: Head, upstream: Response, request_id: str, reply: Reply, cookie: Sequence[str]
) -> None:
    """Zoom's answer to the client: whole when small, else streamed as it arrives."""
    status = upstream.status
    length = upstream.content_length
    lines = [status_line(status)]
    named: set[str] = set()
    for name, value in headers_for_client(upstream.headers):
        lower = name.lower()
        if lower in _DEFAULTED:
            named.add(lower)
            if lower == "content-length" and head.method != "HEAD":
                continue  # set below, for the body actually sent (none for 204 or 304)
        lines.append(f"{name}: {value}\r\n")
    lines += [f"Set-Cookie: {value}\r\n" for value in cookie]
    if "date" not in named:
        lines.append(f"Date: {rfc822_formatted_time()}\r\n")
    if "server" not in named:
        lines.append(f"Server: {SERVER}\r\n")
    _common_headers(lines, request_id, head.keep_alive)
    if upstream.bodiless:
        lines.append("\r\n")
        reply.write(_joined(lines))
        return
    if "content-type" not in named and length != 0:
        lines.append("Content-Type: application/octet-stream\r\n")
    if length is not None and length <= SMALL_BODY:
        body = upstream.body_if_complete() or await whole_body(upstream)
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        reply.write(_joined(lines) + body)
        return
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n\r\n")
        reply.write(_joined(lines))
        # Zoom's bytes are exactly what the client must get: they skip the coroutine.
        upstream.stream_to(reply.transport)
        await _copy(upstream, reply, chunked=False)
        return
    lines.append("Transfer-Encoding: chunked\r\n\r\n")
    reply.write(_joined(lines))
    await _copy(upstream, reply, chunked=True)


async def _copy(upstream: Response, reply: Reply, *, chunked: bool) -> None:
    try:
        async for chunk in upstream.chunks():
            reply.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await reply.drain()
    except ConnectionError:  # Zoom broke off, or the client left: so the client can tell
        reply.close()
        return
    if chunked:
        reply.write(b"0\r\n\r\n")


def _common_headers(lines: list[str], request_id: str, keep_alive: bool) -> None:
    """What every answer on ``/api/`` carries, as the aiohttp path's middleware adds it."""
    lines.append(f"X-Request-ID: {request_id}\r\nVary: Origin\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")


def _joined(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


def api_lane(app: web.Application) -> ApiLane | None:
    """The lane for ``app`` (started), or ``None`` when its sessions live in Redis (or
    it is not the proxy)."""
    sessions = app.get(SESSIONS)
    return ApiLane(app, sessions) if isinstance(sessions, CookieSessions) else None
