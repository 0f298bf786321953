"""``/api/*`` answered on the connection's first reader (:mod:`proxy.front`), without
aiohttp's server: the hot path.

The lane takes a request only when answering it needs nothing but a read-only look
at the session and one call to Zoom:

* ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` on a safe ``/api/`` path;
* a cookie session whose tokens need no refresh (and have no successor);
* no ``Origin``, and ``Sec-Fetch-Site`` absent, ``same-origin`` or ``none``: nothing to
  screen, no CORS to grant;
* not a browser navigation (those get HTML errors and sign-in redirects);
* no ``Expect``, and a body, if any, small enough to replay, framed by ``Content-Length``.

Anything else goes to aiohttp, and so does a request Zoom answers with 401 (it means a
refresh and a retry, which :func:`proxy.forward.forward` does). What the lane answers,
it answers as ``forward`` and its middlewares would: the same headers each way, the same
error bodies, request id, metrics, access-log line and in-flight count.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from http import HTTPStatus

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from .errors import ProxyError, UnsafePath
from .forward import SMALL_BODY, RefusedByZoom, upstream_target, whole_body
from .front import Handover, Head, Job, Reply
from .headers import headers_for_client, headers_for_zoom
from .http_errors import log_refusal
from .keys import REFRESHER, SESSIONS, SETTINGS, UPSTREAM
from .lifecycle import LIFECYCLE
from .logs import accepted_request_id, client_address, current_request_id, log_access
from .metrics import METRICS
from .session_store import CookieSessions, SignedIn
from .upstream import Response

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})
#: Answers that never have a body (RFC 9110, 6.4.1).
_NO_BODY = frozenset({204, 304})
#: Response headers the lane sets itself.
_FRAMING = frozenset({"content-length", "date", "server", "content-type"})

_access_log = logging.getLogger("aiohttp.access")


@functools.cache
def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}\r\n"


class ApiLane:
    """Takes and answers the plain ``/api/*`` requests of an app with cookie sessions."""

    def __init__(self, app: web.Application, sessions: CookieSessions) -> None:
        settings = app[SETTINGS]
        self._sessions = sessions
        self._refresher = app[REFRESHER]
        self._upstream = app[UPSTREAM]
        self._metrics = app[METRICS]
        self._lifecycle = app[LIFECYCLE]
        self._base_path = settings.zoom.api_base_path
        self._trust_forwarded = settings.trust_forwarded_headers
        #: The largest body the lane takes: small enough to replay, and read whole.
        self.max_body = min(SMALL_BODY, settings.upstream.max_replay_body)

    def take(self, head: Head) -> Job | None:
        first = head.first
        if (
            head.method not in METHODS
            or not head.target.startswith("/api/")
            or "origin" in first
            or first.get("sec-fetch-site", "none") not in _SAME_ORIGIN_FETCH
            or "expect" in first
            or "text/html" in first.get("accept", "")
            or head.content_length > self.max_body
        ):
            return None
        try:
            target = upstream_target(self._base_path, head.target)
        except UnsafePath:
            return None
        # Quiet: a cookie that fails here is reported where the request goes next.
        signed_in = self._sessions.read(first.get("cookie", ""), quiet=True)
        if signed_in is None or not self._refresher.usable(signed_in.data.tokens):
            return None
        return functools.partial(self._serve, head, target, signed_in)

    async def _serve(
        self, head: Head, target: str, signed_in: SignedIn, body: bytes, reply: Reply
    ) -> Handover | None:
        started = asyncio.get_running_loop().time()
        request_id = accepted_request_id(head.first.get("x-request-id"))
        context = current_request_id.set(request_id)
        self._lifecycle.enter()
        status = 500
        upstream_status: int | None = None
        try:
            try:
                upstream = await self._send(head, target, signed_in, body)
            except ProxyError as error:
                log_refusal(head.method, head.target, error)
                status = error.status
                reply.write(_error_answer(error, request_id, head.keep_alive))
                return None
            upstream_status = upstream.status
            try:
                if upstream.status == 401:
                    status = 0  # not answered: aiohttp refreshes and sends it again
                    return Handover(RefusedByZoom(signed_in.data.tokens.access_token))
                status = upstream.status
                try:
                    await _relay(head, upstream, request_id, reply)
                except ProxyError as error:  # a small body that broke off
                    log_refusal(head.method, head.target, error)
                    status = error.status
                    reply.write(_error_answer(error, request_id, head.keep_alive))
                return None
            finally:
                upstream.release()
        finally:
            self._lifecycle.leave()
            if status:
                self._metrics.count_answer(head.method, head.target, status)
                if _access_log.isEnabledFor(logging.INFO):
                    log_access(
                        _access_log,
                        method=head.method,
                        raw_target=head.target,
                        status=status,
                        seconds=asyncio.get_running_loop().time() - started,
                        user_id=signed_in.data.user.id,
                        request_id=request_id,
                        upstream_status=upstream_status,
                        remote=client_address(
                            reply.peer,
                            head.first.get("x-forwarded-for"),
                            trusted=self._trust_forwarded,
                        ),
                    )
            current_request_id.reset(context)

    async def _send(self, head: Head, target: str, signed_in: SignedIn, body: bytes) -> Response:
        connection = (
            [value for name, value in head.headers if name.lower() == "connection"]
            if "connection" in head.first
            else ()
        )
        headers = headers_for_zoom(
            head.headers,
            connection,
            access_token=signed_in.data.tokens.access_token,
            trust_forwarded=self._trust_forwarded,
        )
        started = time.perf_counter()
        try:
            return await self._upstream.request(head.method, target, headers, body)
        finally:
            self._metrics.observe_upstream_latency(started)


async def _relay(head: Head, upstream: Response, request_id: str, reply: Reply) -> None:
    """Zoom's answer to the client: whole when small, else streamed as it arrives."""
    status = upstream.status
    bodiless = head.method == "HEAD" or status in _NO_BODY or status < 200
    length = upstream.content_length
    lines = [_status_line(status)]
    named: set[str] = set()
    for name, value in headers_for_client(upstream.headers):
        lower = name.lower()
        if lower in _FRAMING:
            named.add(lower)
            if lower == "content-length" and not (head.method == "HEAD" or status == 304):
                continue  # set below, for the body actually sent
        lines.append(f"{name}: {value}\r\n")
    if "date" not in named:
        lines.append(f"Date: {rfc822_formatted_time()}\r\n")
    if "server" not in named:
        lines.append(f"Server: {SERVER_SOFTWARE}\r\n")
    _common_headers(lines, request_id, head.keep_alive)
    if bodiless:
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


def _error_answer(error: ProxyError, request_id: str, keep_alive: bool) -> bytes:
    """As :func:`proxy.http_errors.render_error` answers a script (the lane takes no
    browser navigations)."""
    body = json.dumps({"error": error.code, "message": error.message}).encode()
    lines = [
        _status_line(error.status),
        "Cache-Control: no-store\r\n",
        "Content-Type: application/json; charset=utf-8\r\n",
        f"Date: {rfc822_formatted_time()}\r\nServer: {SERVER_SOFTWARE}\r\n",
    ]
    _common_headers(lines, request_id, keep_alive)
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return _joined(lines) + body


def api_lane(app: web.Application) -> ApiLane | None:
    """The lane for ``app`` (started), or ``None`` when its sessions live in Redis (or
    it is not the proxy)."""
    sessions = app.get(SESSIONS)
    return ApiLane(app, sessions) if isinstance(sessions, CookieSessions) else None
