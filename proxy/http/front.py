"""The connection's first reader: requests a :class:`Lane` takes are answered here,
without aiohttp's server; the connection goes to aiohttp at the first one it declines.

For a forwarded small GET, aiohttp's server (its protocol, request and response
objects, router and middleware chain) was about 40% of the proxy's CPU per request.
Most traffic is one shape: a signed-in client calling ``/api/...`` with a fresh
token. This reader parses each request head (llhttp, through httptools) and offers it
to the lane. At the first request the lane declines (a sign-in page, a preflight, a
refresh, a chunked body, anything the parser or the lane finds unusual), the
connection is handed to aiohttp's protocol for good, with every byte from that
request's first on. So aiohttp stays the judge of every request the lane does not
answer itself, and sees it exactly as the client sent it.

Requests are answered one at a time; pipelined ones wait in the buffer. A body up to
``max_whole_body`` bytes is read whole before its job starts; a larger one reaches
the job as a :class:`BodyStream` while it arrives.

A request whose framing no transport may take (:func:`proxy.http.heads.framing_refusal`) is
refused here, and the connection closes with nothing after it read. So is a head that
grows past ``max_head_size``, takes over ``head_timeout`` to arrive, or would take the
partial heads held over all connections past their :class:`HeadBudget`. A partial head
that llhttp already finds invalid (bare LF line ends, a TLS handshake) is handed over
at once, for aiohttp to refuse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

import httptools

from proxy.errors import (
    ClientTooSlow,
    HeadTooLarge,
    HeadTooSlow,
    ProxyError,
    RequestLineTooLong,
    SlowHeadsOverBudget,
)
from proxy.http.body import BodyStream, ClientLeft
from proxy.http.flow import WriteFlow
from proxy.http.heads import Head, Limits, parse_head
from proxy.http.limits import KEEPALIVE_TIMEOUT, HeadBudget, HeadWatch

log = logging.getLogger(__name__)

#: Bytes read ahead of the request being answered before reading pauses.
_READ_AHEAD = 1 << 16
#: Bytes of a streamed body read ahead of its job before reading pauses (as aiohttp's
#: ``read_bufsize`` in :data:`proxy.http.server.CONNECTION_OPTIONS`).
_BODY_AHEAD = 1 << 19
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: A request line's bytes beside its target: the longest method, spaces, the version.
_REQUEST_LINE_EXTRA = len("OPTIONS  HTTP/1.1")


class Job(Protocol):
    """A request a lane took, answered on its :class:`Reply` once its body is here."""

    async def answer(self, body: bytes | BodyStream) -> None:
        """Answer, given the body: whole (up to ``max_whole_body``), or as it arrives."""

    async def refuse(self, error: ProxyError) -> None:
        """Answer ``error`` instead: the body never came whole (:class:`ClientTooSlow`)."""


class _Request:
    """The request a connection is reading the body of, or answering: from its whole
    head to its whole answer."""

    __slots__ = ("body_moved", "body_whole", "head", "job", "size", "stream", "task")

    def __init__(self, job: Job, head: Head, head_size: int) -> None:
        self.job = job
        self.head = head
        #: Its bytes in the buffer: the head, and a body read whole.
        self.size = head_size
        #: A body too large to read whole, as it arrives.
        self.stream: BodyStream | None = None
        #: Answering it, once its body is here (or streaming).
        self.task: asyncio.Task[None] | None = None
        #: When its body last moved (set once it is awaited).
        self.body_moved = 0.0
        #: Whether its body was read whole (the next request starts after it).
        self.body_whole = False

    @property
    def body_unread(self) -> bool:
        """Whether part of its body has still to arrive (or never will)."""
        if self.stream is not None:
            return self.stream.unread > 0
        return not self.body_whole

    @property
    def reading(self) -> bool:
        """Whether the connection is waiting for its body to arrive."""
        stream = self.stream
        return self.task is None or (stream is not None and stream.unread > 0)


class _PartialHead:
    """A head still arriving, each new piece looked at once (a head trickling in byte by
    byte must not cost the square of its size): where its lines end, and llhttp's
    verdict so far."""

    __slots__ = ("fed", "invalid", "line_start", "parser", "request_line")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        #: Bytes looked at so far.
        self.fed = 0
        #: Where the line still arriving starts.
        self.line_start = 0
        #: The request line's length once it is whole, else -1.
        self.request_line = -1
        #: Whether what has come so far can never start a valid head.
        self.invalid = False

    def take(self, buffer: bytearray) -> None:
        """Look at what arrived since the last call."""
        # A CRLF may straddle two pieces.
        since = max(self.fed - 1, 0)
        if self.request_line < 0:
            self.request_line = buffer.find(b"\r\n", since)
        last = buffer.rfind(b"\r\n", since)
        if last >= 0:
            self.line_start = last + 2
        try:
            self.parser.feed_data(bytes(buffer[self.fed :]))
        except httptools.HttpParserError:
            self.invalid = True
        self.fed = len(buffer)


#: The answer that refuses a request and ends its connection, given the client's address.
Refusal = Callable[[ProxyError, "str | None"], bytes]


class Lane(Protocol):
    """What answers the requests it can, on the connection's first reader."""

    def take(self, head: Head, reply: Reply) -> Job | None:
        """A job for this request, answering on ``reply``; or ``None`` to leave it (and
        the connection) to aiohttp."""


class Reply:
    """Where a lane writes its answer: the client's transport, with back-pressure, and
    the loop it runs on."""

    __slots__ = ("flow", "loop", "peer", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        peer = transport.get_extra_info("peername")
        self.peer: str | None = peer[0] if isinstance(peer, tuple) else None
        #: Whether the client keeps up with what was written to it.
        self.flow = WriteFlow()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        """Until the client has taken most of what was written."""
        await self.flow.drain()

    def close(self) -> None:
        """End the connection at once, the answer incomplete (so the client can tell)."""
        self.transport.close()


class FrontProtocol(asyncio.Protocol):
    """One client connection, until (unless) it is handed to aiohttp."""

    def __init__(
        self,
        lane: Lane,
        fallback: Callable[[], asyncio.Protocol | None],
        limits: Limits,
        connections: set[FrontProtocol],
        refusal: Refusal,
        budget: HeadBudget,
    ) -> None:
        # Held, not asked for: on Python 3.11, each asyncio.get_running_loop() is a
        # getpid() system call (a fork check), and the hot path asked five times a request.
        self._loop = asyncio.get_running_loop()
        self._lane = lane
        self._fallback = fallback
        self._limits = limits
        self._connections = connections
        self._refusal = refusal
        self._transport: asyncio.Transport | None = None
        self._reply: Reply | None = None
        self._buffer = bytearray()
        #: The request taken, from its whole head until it is answered.
        self._request: _Request | None = None
        self._paused = False
        self._closing = False
        #: The client has sent all it will (it shut its side down).
        self._client_done = False
        #: The connection is aiohttp's now.
        self._handed_over = False
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        #: The timer that watches a request's body arrive.
        self._stall_timer: asyncio.TimerHandle | None = None
        #: The head still arriving: llhttp's verdict so far, and its time and bytes.
        self._partial: _PartialHead | None = None
        self._head = HeadWatch(budget, limits.head_timeout, self._head_too_slow)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._reply = Reply(transport, self._loop)
        self._connections.add(self)
        self._went_idle()

    def data_received(self, data: bytes) -> None:
        request = self._request
        stream = None if request is None else request.stream
        if stream is not None and stream.unread:
            request.body_moved = self._loop.time()  # type: ignore[union-attr]
            data = stream.feed(data)
            if stream.queued > _BODY_AHEAD:
                self._pause_reading()
            if not data:
                return
        self._buffer += data
        if request is None or request.task is None:
            if request is not None:
                request.body_moved = self._loop.time()
            self._next()
        elif len(self._buffer) > _READ_AHEAD:
            self._pause_reading()

    def eof_received(self) -> bool:
        """The client will send nothing more. A request it sent whole is still answered
        (it may have shut down only its sending side, as ``nc -N`` does), then the
        connection closes. Anything else ends now: the transport closes, and
        ``connection_lost`` cancels a request whose body will never come whole."""
        self._client_done = True
        request = self._request
        return request is not None and not request.reading

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._stop_idle_timer()
        self._stop_stall_timer()
        self._head_arrived()
        request = self._request
        if request is not None and request.stream is not None:
            request.stream.fail(ClientLeft("the client has gone"))
        if self._reply is not None:
            self._reply.flow.lose(ConnectionResetError("the client has gone"))
        if request is not None and request.task is not None:
            request.task.cancel()

    def pause_writing(self) -> None:
        if self._reply is not None:
            self._reply.flow.pause()

    def resume_writing(self) -> None:
        if self._reply is not None:
            self._reply.flow.resume()

    # shutdown

    def close_when_idle(self) -> asyncio.Task[None] | None:
        """Close now if between requests, else once the current answer is sent (the
        task sending it is returned)."""
        self._closing = True
        task = None if self._request is None else self._request.task
        if task is None:
            self._close()
        return task

    # requests

    def _next(self) -> None:
        """Answer the request at the front of the buffer, if it has arrived."""
        buffer = self._buffer
        request = self._request
        if request is None:
            partial = self._partial
            end = buffer.find(b"\r\n\r\n", 0 if partial is None else max(partial.fed - 3, 0))
            if end < 0:
                self._head_arriving()
                return
            self._head_arrived()
            if end + 4 > self._limits.max_head_size:  # as if it had come in pieces
                self._refuse(HeadTooLarge())
                return
            head = parse_head(bytes(buffer[: end + 4]), self._limits)
            if isinstance(head, ProxyError):
                self._refuse(head)
                return
            job = None if head is None else self._lane.take(head, self._reply)  # type: ignore[arg-type]
            if head is None or job is None:
                self._hand_over()
                return
            if head.expects_continue:
                self._transport.write(_CONTINUE)  # type: ignore[union-attr]
            request = self._request = _Request(job, head, end + 4)
        head = request.head
        if self._client_done and len(buffer) < request.size + head.content_length:
            self._close()  # its body will never come whole
            return
        if head.content_length > self._limits.max_whole_body:
            stream = request.stream = BodyStream(head.content_length, self._body_taken)
            rest = stream.feed(bytes(buffer[request.size :]))
            buffer[:] = rest
            request.size = 0
            request.body_moved = self._loop.time()
            self._stall_check()
            self._start(request, request.job.answer(stream))
            return
        size = request.size + head.content_length
        if len(buffer) >= size:
            self._stop_stall_timer()
            body = bytes(buffer[request.size : size])
            request.size = size
            request.body_whole = True
            self._start(request, request.job.answer(body))
        elif self._stall_timer is None:
            request.body_moved = self._loop.time()
            self._stall_check()

    def _start(self, request: _Request, answering: Coroutine[Any, Any, None]) -> None:
        request.task = self._loop.create_task(self._answer(request, answering))

    async def _answer(self, request: _Request, answering: Coroutine[Any, Any, None]) -> None:
        """Answer ``request``; then go on with the next one, or close."""
        reply = self._reply
        assert reply is not None
        try:
            await answering
            if reply.flow.paused:
                # A client that reads nothing is sent nothing more: pipelined requests
                # would otherwise pile answers up in the transport's buffer.
                await reply.drain()
        except ConnectionError:  # the client has gone (connection_lost cleans up)
            return
        except Exception:
            log.exception("unexpected error answering %s", request.head.method)
            self._close()
            return
        finally:
            self._request = None
        self._stop_stall_timer()
        del self._buffer[: request.size]
        transport = self._transport
        assert transport is not None
        if (
            not request.head.keep_alive
            or self._closing
            or transport.is_closing()
            # Where the next request starts is unknown:
            or request.body_unread
        ):
            self._close()
            return
        self._resume_reading()
        self._went_idle()
        if self._buffer:
            self._next()
        if self._client_done and self._request is None and not self._handed_over:
            self._close()  # everything the client sent whole is answered

    def _head_arriving(self) -> None:
        """Part of a head is buffered: judge it so far, and bound its size and time."""
        buffer, limits, partial = self._buffer, self._limits, self._partial
        if partial is None:
            partial = self._partial = _PartialHead()
        partial.take(buffer)
        # As aiohttp limits them: the target alone (the line adds a method and a
        # version), and a header's name and value each.
        request_line = partial.request_line if partial.request_line >= 0 else len(buffer)
        if request_line > limits.max_line_size + _REQUEST_LINE_EXTRA:
            self._refuse(RequestLineTooLong())
        elif len(buffer) > limits.max_head_size or self._field_too_large(partial):
            self._refuse(HeadTooLarge())
        elif partial.invalid:
            self._hand_over()
        elif not self._head.hold(len(buffer)):
            self._refuse(SlowHeadsOverBudget())

    def _field_too_large(self, partial: _PartialHead) -> bool:
        """Whether the header line still arriving has a name or value over the limit."""
        if partial.request_line < 0:
            return False
        buffer, line_start = self._buffer, partial.line_start
        colon = buffer.find(b":", line_start)
        name = (len(buffer) if colon < 0 else colon) - line_start
        value = 0 if colon < 0 else len(buffer) - colon - 1
        return max(name, value) > self._limits.max_field_size

    def _head_arrived(self) -> None:
        """The head is whole (or given up on): it no longer counts, nor is it timed."""
        if self._partial is not None:
            self._partial = None
            self._head.end()

    def _head_too_slow(self) -> None:
        self._refuse(HeadTooSlow())

    def _refuse(self, error: ProxyError) -> None:
        """Answer ``error`` and close: nothing after this request is read."""
        self._head_arrived()
        self._stop_idle_timer()
        self._buffer.clear()
        transport, reply = self._transport, self._reply
        assert transport is not None
        assert reply is not None
        if not transport.is_closing():
            transport.write(self._refusal(error, reply.peer))
            transport.close()

    def _stall_check(self) -> None:
        """Give up on a client silent mid-body for ``body_stall`` seconds, as the aiohttp
        path does. Time with reading paused (the proxy waiting on Zoom) does not count."""
        self._stall_timer = None
        request = self._request
        if request is None or not request.reading:
            return
        now = self._loop.time()
        if self._paused:
            request.body_moved = now
        due = request.body_moved + self._limits.body_stall
        if now < due:
            self._stall_timer = self._loop.call_at(due, self._stall_check)
        elif request.stream is not None:
            request.stream.fail(ClientTooSlow())
        else:  # a body to be read whole
            request.size = len(self._buffer)
            self._start(request, request.job.refuse(ClientTooSlow()))

    def _stop_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _body_taken(self) -> None:
        if len(self._buffer) <= _READ_AHEAD:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _hand_over(self) -> None:
        """From here on, aiohttp's protocol reads this connection, from the buffer on."""
        transport = self._transport
        assert transport is not None
        self._connections.discard(self)
        self._stop_idle_timer()
        self._head_arrived()
        if transport.is_closing():
            return
        self._resume_reading()
        protocol = self._fallback()
        if protocol is None:  # the server is shutting down
            transport.close()
            return
        self._handed_over = True
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._buffer:
            protocol.data_received(bytes(self._buffer))
        self._buffer.clear()
        if self._client_done and not protocol.eof_received():
            transport.close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # idle connections

    def _went_idle(self) -> None:
        loop = self._loop
        self._idle_since = loop.time()
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._idle_since + KEEPALIVE_TIMEOUT, self._idle_check)

    def _idle_check(self) -> None:
        """One timer per connection and keep-alive period rather than per request: it
        closes the connection only if no request came since."""
        self._idle_timer = None
        loop = self._loop
        due = self._idle_since + KEEPALIVE_TIMEOUT
        if self._request is not None:
            # Answering, or reading a body (which the stall timer watches): idle at the
            # earliest once that is done.
            due = loop.time() + KEEPALIVE_TIMEOUT
        elif loop.time() >= due:
            self._close()
            return
        self._idle_timer = loop.call_at(due, self._idle_check)

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class Front:
    """Makes a :class:`FrontProtocol` per connection, and closes them at shutdown."""

    def __init__(
        self,
        lane: Lane,
        fallback: Callable[[], asyncio.Protocol | None],
        limits: Limits,
        *,
        refusal: Refusal,
        shutdown_timeout: float,
        head_budget: HeadBudget,
    ) -> None:
        self._lane = lane
        self._fallback = fallback
        self._limits = limits
        self._refusal = refusal
        self._shutdown_timeout = shutdown_timeout
        self._connections: set[FrontProtocol] = set()
        #: Shared with aiohttp's connections, which count the partial heads they hold.
        self.head_budget = head_budget

    def __call__(self) -> FrontProtocol:
        return FrontProtocol(
            self._lane,
            self._fallback,
            self._limits,
            self._connections,
            self._refusal,
            self.head_budget,
        )

    async def shutdown(self) -> None:
        """Close idle connections now, busy ones once their answer is sent, waiting for
        those answers up to ``shutdown_timeout``, as aiohttp's server does for its own."""
        busy = [task for c in list(self._connections) if (task := c.close_when_idle())]
        if busy:
            await asyncio.wait(busy, timeout=self._shutdown_timeout)
