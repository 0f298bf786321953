"""A lean HTTP/1.1 keep-alive client for Zoom's API: the forwarding hot path.

Measured side by side, an aiohttp app forwarding with aiohttp's client spent about
three times the CPU per request of the same app with a minimal protocol-based client
(timers, tracing, cookie and redirect handling, URL objects, a task per body write).
Forwarding needs none of that, so this client does only what it needs, on
``asyncio.Protocol`` with httptools' llhttp parser:

* one origin, a pool of keep-alive connections (at most ``limit`` in use; waiting
  for one counts against ``connect_timeout``), idle ones dropped after
  ``idle_timeout`` and as soon as Zoom closes them;
* the request target and headers sent byte for byte as given, bodies either whole
  (one write with the headers when small) or streamed, chunked when of unknown length;
* ``read_timeout`` between any two reads, headers included (enforced by a periodic
  sweep, so up to ``min(1 s, read_timeout / 8)`` late);
* response bodies buffered up to ``buffer_limit`` bytes, then reading pauses; or,
  after :meth:`Response.stream_to`, written straight to the client's transport while
  the client keeps up (:mod:`proxy.http.flow` decides, and paces streamed requests);
* a request that finds a pooled connection already closed by Zoom is sent once more
  on a new one, if it is idempotent and its body is kept whole (RFC 9110, 9.2.2);
* a connection goes back to the pool only when its answer ended exactly where its
  framing says, with nothing unread: any byte past the answer, or while idle, closes
  it, and so does a HEAD answer (whose end llhttp cannot tell from a body sent anyway).

Failures are :mod:`proxy.errors`: :class:`UpstreamUnreachable`, :class:`UpstreamTimeout`;
a body that breaks off raises :class:`BodyBrokeOff` from :meth:`Response.read` and
:meth:`Response.chunks`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Final, Protocol, cast, runtime_checkable

import httptools
from yarl import URL

from proxy.errors import UpstreamTimeout, UpstreamUnreachable
from proxy.http.flow import WriteFlow, keeps_up
from proxy.http.methods import BODY_METHODS, IDEMPOTENT_METHODS

RawHeaders = list[tuple[bytes, bytes]]


@runtime_checkable
class DirectBody(Protocol):
    """A streamed request body of exactly its declared length that writes itself to the
    connection as it arrives, while the connection keeps up (:class:`proxy.http.body.BodyStream`).
    Iterated, it yields only what it could not write at once."""

    def stream_to(self, sink: asyncio.Transport, limit: int) -> None:
        """From now on, write straight to ``sink`` while its buffer is under ``limit``
        and nothing waits to be yielded."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...


Body = bytes | AsyncIterator[bytes] | DirectBody | None

#: How often, at most, the pool looks for waits past their deadline.
_SWEEP_INTERVAL = 1.0
#: Bodies up to this size go out in the same write as the headers.
_ONE_WRITE = 1 << 16


class BodyBrokeOff(ConnectionError):
    """Zoom's body stopped before its end: the connection closed, or stayed silent."""


class _BeyondTheAnswer(Exception):
    """Bytes past the end of the one answer to one request (a second answer, a body
    after a HEAD answer): the connection cannot be trusted."""


#: Answers that never have a body (RFC 9110, 6.4.1), whatever their headers say.
NO_BODY_STATUSES: Final = frozenset({204, 304})


class Response:
    """Zoom's status and headers; the body is read with :meth:`read` or :meth:`chunks`,
    and :meth:`release` must be called once done, whatever happened."""

    __slots__ = (
        "_connection",
        "_length",
        "_read_ahead",
        "_released",
        "_upstream_framed",
        "bodiless",
        "headers",
        "status",
    )

    def __init__(
        self, connection: _Connection, status: int, headers: RawHeaders, *, head_request: bool
    ) -> None:
        self._connection = connection
        self._released = False
        self.status = status
        #: No body follows these headers: the answer to a HEAD, a 204 or a 304. Whatever
        #: its headers say, nothing more of it is to be written to the client.
        self.bodiless = head_request or status in NO_BODY_STATUSES
        #: As Zoom sent them: names and values are bytes, in order, repeats kept.
        self.headers = headers
        self._length: int | None = None
        #: What :meth:`read_at_most` read of a body it found too large, for :meth:`chunks`.
        self._read_ahead = b""
        #: False when the body runs to the end of the connection (no length, not chunked).
        self._upstream_framed = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                self._length = int(value) if value.isdigit() else None
                self._upstream_framed = True
            elif lower == b"transfer-encoding":
                # Only chunked delimits a body; any other coding runs to the close.
                self._upstream_framed = value.rstrip().lower().endswith(b"chunked")

    @property
    def content_length(self) -> int | None:
        return self._length

    def body_if_complete(self) -> bytes | None:
        """The whole body if it has already arrived (a small one usually comes with the
        headers), without waiting; else ``None``."""
        return self._connection.complete_body()

    async def read(self) -> bytes:
        """The whole body (for bodies known to be small)."""
        pieces = []
        while piece := await self._connection.next_body_chunk():
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def read_at_most(self, limit: int) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes; else ``None``, and what was
        read to find that out comes first from :meth:`chunks`. A body whose length says
        it is larger is not read at all."""
        if self._length is not None:
            return None if self._length > limit else await self.read()
        pieces: list[bytes] = []
        size = 0
        while piece := await self._connection.next_body_chunk():
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                self._read_ahead = b"".join(pieces)
                return None
        return b"".join(pieces)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, the pieces buffered meanwhile joined into one."""
        connection = self._connection
        if self._read_ahead:
            read_ahead, self._read_ahead = self._read_ahead, b""
            yield read_ahead
        while True:
            chunk = await connection.next_body_chunk()
            if not chunk:
                return
            yield chunk

    def stream_to(self, sink: asyncio.Transport) -> None:
        """From now on, write body pieces straight to ``sink`` while it keeps up.

        Only pieces that find ``sink`` over ``buffer_limit`` (or others already
        waiting) are left for :meth:`chunks`, whose caller writes them and waits for the
        client to drain. ``sink`` must take the body's bytes as they are: a body of
        known length, neither chunked nor compressed on the way out.
        """
        self._connection.stream_to(sink)

    def release(self) -> None:
        """Back to the pool if the exchange completed cleanly, else closed. Only the
        first call counts: by a second, the connection may carry another request."""
        if not self._released:
            self._released = True
            self._connection.release()


class _Exchange:
    """One request and its answer on a connection: made when the request is sent,
    dropped when its response is released (or with the connection, closed on a failure).
    The connection keeps only what outlives an exchange."""

    __slots__ = (
        "answer",
        "answered",
        "body_done",
        "body_error",
        "body_waiter",
        "handed_out",
        "head_request",
        "headers",
        "informational",
        "keep_alive",
        "response",
        "sender",
        "sent",
        "sink",
    )

    def __init__(self, answer: asyncio.Future[Response], head_request: bool) -> None:
        #: Resolved with the response once its headers arrive; ``None`` once they did
        #: (or the wait for them failed).
        self.answer: asyncio.Future[Response] | None = answer
        self.head_request = head_request
        #: The answer's headers so far.
        self.headers: RawHeaders = []
        #: A 1xx answer is being read: the real one follows.
        self.informational = False
        #: Whether any byte of the answer has arrived.
        self.answered = False
        #: Whether the whole request went out: a connection whose request body was cut
        #: short must never carry another request (Zoom would read it as that body).
        self.sent = False
        #: Sends a streamed request body, until it has.
        self.sender: asyncio.Task[None] | None = None
        self.response: Response | None = None
        self.keep_alive = False
        self.body_done = False
        self.body_error: BaseException | None = None
        #: What a reader waiting for the body awaits.
        self.body_waiter: asyncio.Future[None] | None = None
        #: Where body pieces go directly while it keeps up (see Response.stream_to).
        self.sink: asyncio.Transport | None = None
        #: A piece handed to the caller may not be written yet: until the caller asks
        #: for the next one, later pieces must queue behind it, not overtake it.
        self.handed_out = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the origin; the exchange in progress on it, if any,
    is an :class:`_Exchange`."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        #: Held, not asked for: each asyncio.get_running_loop() is a getpid() system
        #: call on Python 3.11, and the pool needs the time twice per request.
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        #: From sending a request to releasing its response.
        self._exchange: _Exchange | None = None
        #: Whether Zoom takes the request body as fast as it is written.
        self._flow = WriteFlow()
        #: Body pieces read and not yet taken, and their size: reading pauses past
        #: ``buffer_limit``. Empty whenever a connection goes back to the pool.
        self._body: list[bytes] = []
        self._buffered = 0
        self._reading_paused = False
        #: When the wait in progress (answer, body, or Zoom taking the body) times out,
        #: in loop time; 0 when nothing is awaited. The pool's sweep enforces it.
        self.deadline = 0.0
        self.used = False
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            self.close()  # nothing was asked: whatever this is, the connection is unusable
            return
        exchange.answered = True
        if self.deadline:
            self.deadline = self.loop.time() + self._pool.read_timeout
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade, _BeyondTheAnswer) as exc:
            # HttpParserUpgrade: a 101, to a request that asked for no protocol switch.
            self._fail(UpstreamUnreachable("Zoom's answer was not valid HTTP."), exc)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        exchange = self._exchange
        if exchange is not None:
            answer, response = exchange.answer, exchange.response
            if answer is not None and not answer.done():
                answer.set_exception(UpstreamUnreachable("Zoom closed the connection."))
            elif response is not None and not exchange.body_done:
                if exc is None and not response._upstream_framed:
                    _end_body(exchange)  # a body delimited by the end of the connection
                else:
                    _break_body(exchange, BodyBrokeOff("Zoom's answer broke off."))
        self._flow.lose()
        self._pool.forget(self)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # -- httptools callbacks: only while feeding data_received, so with an exchange ----

    def on_message_begin(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        if exchange.response is not None:
            raise _BeyondTheAnswer()

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        exchange.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx (103 Early Hints, say): the real answer follows on the same connection.
            exchange.headers, exchange.informational = [], True
            return
        response = Response(self, status, exchange.headers, head_request=exchange.head_request)
        exchange.response = response
        exchange.keep_alive = self._parser.should_keep_alive()
        if exchange.head_request:
            # llhttp cannot be told that a HEAD answer has no body: it would read the
            # body its headers announce. Any such byte is refused (on_body).
            _end_body(exchange)
        answer = exchange.answer
        if answer is not None and not answer.done():
            answer.set_result(response)

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        if exchange.body_done:  # a body after a HEAD answer
            raise _BeyondTheAnswer()
        sink = exchange.sink
        limit = self._pool.buffer_limit
        if (
            sink is not None
            and not self._body
            and not exchange.handed_out
            and keeps_up(sink, limit)
        ):
            sink.write(body)  # straight through: no coroutine wakes up for this piece
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > limit and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True
        waiter = exchange.body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        if exchange.informational:
            exchange.informational = False
            return
        _end_body(exchange)

    # -- one exchange -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def answered(self) -> bool:
        """Whether any byte of the answer to the last request has arrived."""
        return self._exchange is not None and self._exchange.answered

    async def exchange(
        self, head: bytes, body: Body, *, head_request: bool, length: int | None
    ) -> Response:
        """Send a request and wait for the response's headers.

        Zoom gets ``read_timeout`` to answer from the moment the whole request is sent.
        A streamed body is sent with ``length`` as declared, chunked when it is ``None``.
        """
        transport = self._transport
        if transport is None:
            raise UpstreamUnreachable("Zoom closed the connection.")
        self.used = True
        answer: asyncio.Future[Response] = self.loop.create_future()
        exchange = self._exchange = _Exchange(answer, head_request)
        if body is None or isinstance(body, bytes):
            if body and len(body) > _ONE_WRITE:
                transport.write(head)
                transport.write(body)
            else:
                transport.write(head + body if body else head)
            exchange.sent = True
            self._expect()
        else:
            sender = self.loop.create_task(self._send_stream(exchange, head, body, length))
            exchange.sender = sender
            sender.add_done_callback(self._sent)
        try:
            return await answer
        finally:
            self.deadline = 0.0
            exchange.answer = None

    async def _send_stream(
        self,
        exchange: _Exchange,
        head: bytes,
        body: AsyncIterator[bytes] | DirectBody,
        length: int | None,
    ) -> None:
        transport = self._transport
        assert transport is not None
        flow = self._flow
        transport.write(head)
        # A direct body writes part of itself, and guarantees its declared length.
        direct = isinstance(body, DirectBody)
        if direct:
            cast(DirectBody, body).stream_to(transport, self._pool.buffer_limit)
        sent = 0
        async for chunk in body:
            if not self.alive or exchange.body_done:
                return  # Zoom has answered (or left) without waiting for the rest
            if not chunk:
                continue  # an empty chunk would be the chunked body's terminator
            if length is None:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                sent += len(chunk)
                if sent > length:
                    # The excess would reach Zoom as the start of another request.
                    raise UpstreamUnreachable("The request body is longer than declared.")
                transport.write(chunk)
            if flow.paused:
                await self._drained()
        if length is None and self.alive:
            transport.write(b"0\r\n\r\n")
        elif length is not None and sent < length and not direct:
            raise UpstreamUnreachable("The request body is shorter than declared.")
        exchange.sent = True

    def _sent(self, sender: asyncio.Task[None]) -> None:
        cancelled = sender.cancelled()
        error = None if cancelled else sender.exception()  # retrieved in any case
        exchange = self._exchange
        if exchange is None or exchange.sender is not sender:
            return  # released meanwhile (which cancelled it, and closed the connection)
        exchange.sender = None
        if cancelled:
            return
        if error is not None:
            # The client's body failed (too slow, or gone): Zoom can never get the rest.
            self._fail(error, None)
        elif exchange.answer is not None and not exchange.answer.done():
            self._expect()

    def _expect(self) -> None:
        """Zoom has ``read_timeout`` from now to send (or take) the next bytes."""
        self.deadline = self.loop.time() + self._pool.read_timeout
        self._pool.watch()

    def expire(self) -> None:
        """The pool's sweep found the deadline passed: every pending wait times out."""
        self.deadline = 0.0
        exchange = self._exchange
        if exchange is not None:
            for waiter in (exchange.answer, exchange.body_waiter):
                if waiter is not None and not waiter.done():
                    waiter.set_exception(UpstreamTimeout())
        if self._flow.paused:
            self._flow.fail(UpstreamTimeout())

    async def _drained(self) -> None:
        """Until Zoom takes more of the body."""
        self._expect()
        try:
            await self._flow.drain()
        finally:
            self.deadline = 0.0

    def _fail(self, error: BaseException, cause: BaseException | None) -> None:
        exchange = self._exchange
        if exchange is not None:
            answer = exchange.answer
            if answer is not None and not answer.done():
                error.__cause__ = cause
                answer.set_exception(error)
            elif not exchange.body_done:
                _break_body(exchange, BodyBrokeOff("Zoom's answer broke off."))
        self.close()

    def complete_body(self) -> bytes | None:
        exchange = self._exchange
        assert exchange is not None
        if not exchange.body_done or exchange.body_error is not None:
            return None
        body = self._body
        whole = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return whole

    async def next_body_chunk(self) -> bytes:
        """The buffered body joined into one piece; ``b""`` at its end."""
        exchange = self._exchange
        assert exchange is not None
        exchange.handed_out = False
        body = self._body
        while not body:
            if exchange.body_error is not None:
                raise exchange.body_error
            if exchange.body_done:
                return b""
            exchange.body_waiter = self.loop.create_future()
            self._expect()
            try:
                await exchange.body_waiter
            except UpstreamTimeout as exc:
                self.close()
                raise BodyBrokeOff("Zoom's answer stopped arriving.") from exc
            finally:
                self.deadline = 0.0
                exchange.body_waiter = None
        chunk = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        exchange.handed_out = True
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return chunk

    def stream_to(self, sink: asyncio.Transport) -> None:
        exchange = self._exchange
        assert exchange is not None
        exchange.sink = sink

    def release(self) -> None:
        exchange, self._exchange = self._exchange, None
        assert exchange is not None
        if exchange.sender is not None:
            exchange.sender.cancel()
            self.close()
        clean = exchange.body_done and exchange.body_error is None and not self._body
        # After a HEAD answer, llhttp still waits for the body its headers announce, and
        # a server that sends one anyway would have it read as the next answer: the
        # connection is not used again.
        if (
            clean
            and exchange.sent
            and exchange.keep_alive
            and self.alive
            and not exchange.head_request
        ):
            self._pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        # The exchange stays until released: connection_lost ends its waits.
        if self._transport is not None:
            self._transport.close()
        self._pool.forget(self)


def _end_body(exchange: _Exchange) -> None:
    exchange.body_done = True
    waiter = exchange.body_waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _break_body(exchange: _Exchange, error: BaseException) -> None:
    exchange.body_error = error
    waiter = exchange.body_waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Pool:
    """Keep-alive connections to one origin (``scheme://host[:port]``)."""

    def __init__(
        self,
        origin: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        buffer_limit: int,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = URL(origin)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._host_line = f"Host: {url.raw_authority}"
        self._limit = limit
        self._connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.buffer_limit = buffer_limit
        self._idle_timeout = idle_timeout
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()
        #: Requests waiting at the limit: each gets a released connection, or ``None``
        #: when a slot freed up and it may connect anew.
        self._waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False
        # One sweep over the busy connections replaces a timer per wait, which showed
        # in the profile; a timeout fires up to a sweep interval late.
        self._sweep_every = min(_SWEEP_INTERVAL, read_timeout / 8)
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def in_use(self) -> int:
        """Connections lent out to a request right now (a gauge, and a leak check)."""
        return len(self._busy)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: Body,
        *,
        content_length: int | None = None,
    ) -> Response:
        """Send ``method target`` with ``headers`` (Host is the pool's) and ``body``.

        A streamed body is sent with ``content_length`` if given, else chunked.
        """
        streamed = body is not None and not isinstance(body, bytes)
        if isinstance(body, bytes):
            content_length = len(body)
        head = _head(method, target, self._host_line, headers, content_length, streamed)
        head_request = method == "HEAD"
        while True:
            # Behind requests already waiting at the limit, never ahead of them.
            connection = None if self._waiting else self._take_idle()
            connection = connection or await self._acquire()
            reused = connection.used
            try:
                return await connection.exchange(
                    head, body, head_request=head_request, length=content_length
                )
            except UpstreamUnreachable:
                connection.close()
                # Zoom closed a pooled connection just as it was reused (RFC 9112, 9.3.1).
                if (
                    not (reused and not streamed and method in IDEMPOTENT_METHODS)
                    or connection.answered
                ):
                    raise
            except BaseException:
                connection.close()
                raise

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection still open and fresh, if any."""
        if not self._idle or len(self._busy) >= self._limit:
            return None
        now = self._idle[-1].loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.alive and now - connection.idle_since < self._idle_timeout:
                self._busy.add(connection)
                return connection
            connection.close()
        return None

    async def _acquire(self) -> _Connection:
        """A new connection, waiting for a free slot at the limit."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                first = True
                while len(self._busy) >= self._limit:
                    waiter: asyncio.Future[_Connection | None]
                    waiter = asyncio.get_running_loop().create_future()
                    # A request woken but beaten to the free slot keeps its place.
                    (self._waiting.append if first else self._waiting.appendleft)(waiter)
                    first = False
                    try:
                        handed = await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._pass_on(waiter.result())  # woken, but leaving
                        raise
                    if handed is not None:
                        return handed
                connection = self._take_idle() or await self._connect()
        except TimeoutError as exc:
            raise UpstreamUnreachable("Zoom's API could not be reached in time.") from exc
        except OSError as exc:
            raise UpstreamUnreachable("Zoom's API could not be reached.") from exc
        return connection

    async def _connect(self) -> _Connection:
        if self._closed:
            raise UpstreamUnreachable("The proxy is shutting down.")
        connection = _Connection(self)
        self._busy.add(connection)
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except BaseException:
            self._busy.discard(connection)
            self._wake_one()
            raise
        return connection

    def put_back(self, connection: _Connection) -> None:
        """A released connection goes to the first request waiting at the limit, if
        any (it stays busy), else to the idle pool."""
        if self._closed:
            connection.close()
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._busy.discard(connection)
        now = connection.loop.time()
        # Taking reuses the newest; the oldest would otherwise stay open for good.
        while self._idle and now - self._idle[0].idle_since >= self._idle_timeout:
            self._idle.popleft().close()
        connection.idle_since = now
        self._idle.append(connection)

    def _pass_on(self, handed: _Connection | None) -> None:
        if handed is None:
            self._wake_one()
        else:
            self.put_back(handed)

    def forget(self, connection: _Connection) -> None:
        """A connection closed (by either side): it no longer counts, in or out."""
        if connection in self._busy:
            self._busy.discard(connection)
            self._wake_one()
        elif connection in self._idle:
            self._idle.remove(connection)

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def watch(self) -> None:
        """A connection has a deadline: make sure a sweep is coming."""
        if self._sweeper is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        watching = False
        for connection in list(self._busy):
            if connection.deadline and connection.deadline <= now:
                connection.expire()
            watching = watching or bool(connection.deadline)
        if watching:
            self.watch()

    def close(self) -> None:
        """Close every connection, idle or lent out, and open no more."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in [*self._idle, *self._busy]:
            connection.close()


def _head(
    method: str,
    target: str,
    host_line: str,
    headers: Sequence[tuple[str, str]],
    content_length: int | None,
    streamed: bool,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", host_line]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length is not None and (content_length or streamed or method in BODY_METHODS):
        lines.append(f"Content-Length: {content_length}")
    elif streamed:
        lines.append("Transfer-Encoding: chunked")
    # Nothing may add a line of its own. Two searches of the lines joined (memchr)
    # rather than a check per header, or a count of the line ends (a byte at a time).
    bare = "".join(lines)
    if "\n" in bare or "\r" in bare:
        raise ValueError("a header value holds a line break")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")
