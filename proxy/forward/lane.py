"""``/api/*`` on the connection's first reader (:mod:`proxy.http.front`), without
aiohttp's server: the hot path's transport.

For a forwarded small GET, aiohttp's server (its protocol, request and response
objects, router and middleware chain) was about 40% of the proxy's CPU per request.
The lane takes the common shape of ``/api`` call and drives the same
:class:`~proxy.forward.core.Forwarder` as aiohttp's handler, writing the answer as
bytes. It takes a request only when nothing but the core is needed to answer it:

* ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` on a safe ``/api/`` path;
* a session known without waiting (:meth:`~proxy.session.store.SessionStore.read_now`:
  a cookie session that opens, or a Redis session this replica holds while Redis
  tracks it), or a service caller's ``Authorization`` (the core checks the key, as it
  does on aiohttp's path);
* no ``Origin``, and ``Sec-Fetch-Site`` absent, ``same-origin`` or ``none``: nothing to
  screen, no CORS to grant;
* not a browser navigation (those get HTML errors and sign-in redirects);
* no ``Expect`` but ``100-continue``; a body, if any, framed by ``Content-Length``.

Anything else goes to aiohttp, before anything is sent to Zoom. What the lane
answers, it answers as aiohttp's middleware would: the same headers, the same error
bodies, request id, metrics, access-log line and in-flight count.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from proxy.errors import ProxyError, RefreshRejected, UnsafePath, error_answer
from proxy.forward.core import FORWARDER, NO_BODY, ApiCall, Forwarder, RequestBody
from proxy.http.answers import SERVER, error_bytes, head_bytes, status_line
from proxy.http.body import BodyStream, ClientLeft
from proxy.http.front import Job, Reply
from proxy.http.heads import Head
from proxy.http.methods import API_METHODS
from proxy.http.seams import http_date
from proxy.observe.record import REQUESTS, Requests
from proxy.session.cookie import ChunkedCookieStorage
from proxy.session.store import SessionStore, SignedIn
from proxy.web.errors import log_refusal, login_url
from proxy.web.keys import SESSIONS, SETTINGS, STORAGE

log = logging.getLogger(__name__)

#: Preflights (OPTIONS) are CORS, which aiohttp's middleware answers.
METHODS = API_METHODS - {"OPTIONS"}
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})
#: What every lane answer carries, as aiohttp's middleware adds it to an answer to a
#: request with no ``Origin`` (:func:`proxy.web.cors.add_cors_headers`).
_VARY = "Vary: Origin\r\n"


class ApiLane:
    """Takes and answers the plain ``/api/*`` requests of the proxy's app."""

    def __init__(self, app: web.Application, sessions: SessionStore) -> None:
        settings = app[SETTINGS]
        self.sessions = sessions
        self.core: Forwarder = app[FORWARDER]
        self.requests: Requests = app[REQUESTS]
        self.storage: ChunkedCookieStorage = app[STORAGE]
        self.public_url = settings.public_url
        #: Bodies up to this size are read whole before forwarding: they can be sent
        #: again after a 401 (``upstream.max_replay_body``).
        self.max_whole_body = settings.upstream.max_replay_body
        #: Whether service callers are served, and users sign in.
        self.callers = settings.service.enabled
        self.users = settings.users_sign_in

    def take(self, head: Head, reply: Reply) -> Job | None:
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
            target = self.core.target(head.target)
        except UnsafePath:  # aiohttp's router answers these (its 404, not the lane's 400)
            return None
        if self.callers and ("authorization" in first or not self.users):
            # A service caller's: the core finds who it is, as on aiohttp's path.
            return _Taken(self, head, reply, None, target)
        # Quiet: a cookie that fails here is reported where the request goes next.
        signed_in = self.sessions.read_now(first.get("cookie", ""))
        if signed_in is None:
            return None
        return _Taken(self, head, reply, signed_in, target)

    def error_bytes(self, call: ApiCall, head: Head, error: ProxyError) -> bytes:
        """The answer for ``error``, as :func:`proxy.web.errors.render_error` gives it
        to a script (the lane takes no browser navigations)."""
        log_refusal(head.method, head.target, error)
        cookies = self.storage.answer_cookies(
            call.cookies,
            ends_session=isinstance(error, RefreshRejected),
            cookie_header=call.cookie_header,
            forwarded_proto=call.forwarded_proto,
        )
        extra = [("Set-Cookie", value) for value in cookies]
        extra += [("X-Request-ID", call.record.request_id), ("Vary", "Origin")]
        answer = error_answer(error, login_url(self.public_url, head.target))
        return error_bytes(answer, extra, close=not head.keep_alive)


class _Taken:
    """A request the lane took: the front's :class:`~proxy.http.front.Job`, and the
    core's :class:`~proxy.forward.core.Answer` as bytes on the client's connection, with
    the headers aiohttp's server and middleware would add.

    One object (and one coroutine) per request, not three: this is the hot path."""

    __slots__ = ("chunked", "head", "lane", "reply", "request_id", "signed_in", "status", "target")

    def __init__(
        self, lane: ApiLane, head: Head, reply: Reply, signed_in: SignedIn | None, target: str
    ) -> None:
        self.lane = lane
        self.head = head
        self.reply = reply
        self.signed_in = signed_in
        self.target = target
        self.request_id = "-"
        #: The status answered, once the head is written.
        self.status: int | None = None
        #: Whether the body is framed in chunks (Zoom gave no length).
        self.chunked = False

    # the front's Job

    async def answer(self, body: bytes | BodyStream | ProxyError) -> None:
        """Forward ``body``, or refuse with the error in its place; the request is
        recorded, counted and logged as aiohttp's middleware and access log would."""
        lane, head, reply = self.lane, self.head, self.reply
        loop = reply.loop
        started = loop.time()
        first = head.first
        record = lane.requests.begin(head.method, head.target, first.get("x-request-id"))
        self.request_id = record.request_id
        call = ApiCall(
            head.method,
            head.target,
            head.headers,
            _connection_values(head) if "connection" in first else (),
            cookie_header=first.get("cookie", ""),
            forwarded_proto=first.get("x-forwarded-proto"),
            record=record,
            signed_in=self.signed_in,
            target=self.target,
            authorization=first.get("authorization"),
        )
        # Counted as failed unless answered; not at all when the client left mid-body.
        counted: int | None = 500
        try:
            try:
                if isinstance(body, ProxyError):
                    raise body
                if isinstance(body, bytes):  # most API calls have none
                    payload = RequestBody(replay=body) if body else NO_BODY
                else:
                    payload = RequestBody(None, body, head.content_length)
                await lane.core.forward(call, payload, self)
            except ProxyError as error:
                if self.status is None:
                    self.status = error.status
                    reply.write(lane.error_bytes(call, head, error))
                else:  # the answer has started: it cannot change now
                    self.cut_off()
            counted = self.status
        except ClientLeft:  # mid-body: there is nobody to answer
            counted = None
            reply.close()
        except ConnectionError:  # while its answer was written: counted, not logged
            counted = self.status
            raise
        finally:
            lane.requests.end(record, counted)
        if counted is not None:
            lane.requests.log_access(
                record,
                status=counted,
                seconds=loop.time() - started,
                peer=reply.peer,
                forwarded_for=first.get("x-forwarded-for"),
            )

    #: A body that never came whole (:class:`~proxy.errors.ClientTooSlow`) is answered
    #: the same way, the error in the body's place.
    refuse = answer

    # the core's Answer

    def whole(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = self._head_lines(status, headers, body=bool(body))
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        self.reply.write(head_bytes(lines) + body)

    async def start(
        self, status: int, headers: list[tuple[str, str]], *, streamed: bool
    ) -> asyncio.Transport | None:
        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        lines = self._head_lines(status, headers, body=streamed)
        if not streamed:  # HEAD, 204, 304: Zoom's length stands for a HEAD only
            if length is not None and self.head.method == "HEAD":
                lines.append(f"Content-Length: {length}\r\n")
        elif length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        else:
            lines.append("Transfer-Encoding: chunked\r\n")
            self.chunked = True
        lines.append("\r\n")
        self.reply.write(head_bytes(lines))
        return self.reply.transport if length is not None else None

    async def write(self, chunk: bytes) -> None:
        self.reply.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk)
        await self.reply.drain()

    async def end(self) -> None:
        if self.chunked:
            self.reply.write(b"0\r\n\r\n")

    def cut_off(self) -> None:
        self.reply.close()

    def _head_lines(self, status: int, headers: list[tuple[str, str]], *, body: bool) -> list[str]:
        """The status line and headers, without the body's framing."""
        self.status = status
        lines = [status_line(status)]
        date = server = content_type = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                continue
            if lower == "date":
                date = True
            elif lower == "server":
                server = True
            elif lower == "content-type":
                content_type = True
            lines.append(f"{name}: {value}\r\n")
        if not date:
            lines.append(f"Date: {http_date()}\r\n")
        if not server:
            lines.append(f"Server: {SERVER}\r\n")
        if body and not content_type:  # as aiohttp's responses default it
            lines.append("Content-Type: application/octet-stream\r\n")
        lines.append(f"X-Request-ID: {self.request_id}\r\n{_VARY}")
        if not self.head.keep_alive:
            lines.append("Connection: close\r\n")
        return lines


def _connection_values(head: Head) -> list[str]:
    return [value for name, value in head.headers if name.lower() == "connection"]


def api_lane(app: web.Application) -> ApiLane | None:
    """The lane for ``app`` (started), or ``None`` when it is not the proxy."""
    sessions = app.get(SESSIONS)
    return None if sessions is None else ApiLane(app, sessions)
