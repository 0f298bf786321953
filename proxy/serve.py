"""Serving an app: the proxy's server limits, quiet parser errors, and signals.

aiohttp answers a request its parser refuses (an oversized header, a bad request
line) before any middleware runs, with a page that quotes the first 100 bytes of
the offending line and a logged traceback doing the same. For a ``Cookie`` header
that is a session cookie. :class:`ProxyRunner` answers those with a plain JSON error
that quotes nothing, and closes the connection.

Its connections also refuse, as the front does, the requests no transport may take
(:func:`proxy.http.heads.framing_refusal`): aiohttp's parser would otherwise take them, and
after a declined non-websocket ``Upgrade`` it stops framing what follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from proxy.config import ListenSettings, UpstreamSettings
from proxy.errors import (
    HeadTooLarge,
    HeadTooSlow,
    NotHttp,
    ProxyError,
    RequestLineTooLong,
    SlowHeadsOverBudget,
    error_answer,
)
from proxy.forward.lane import api_lane
from proxy.http.answers import SERVER, connection_refusal, log_connection_refusal
from proxy.http.front import KEEPALIVE_TIMEOUT, Front, HeadBudget, HeadWatch, Job
from proxy.http.heads import MAX_HEAD_SIZE, Head, Limits, framing_refusal
from proxy.http.listen import EagerSite
from proxy.observe.lifecycle import LIFECYCLE
from proxy.observe.logs import AccessLogger
from proxy.web.keys import SETTINGS

log = logging.getLogger(__name__)

#: Cookie headers of at least 16 KiB must be accepted (chunked sessions).
MAX_FIELD_SIZE = 32 * 1024
#: The request line: path and query. Zoom's own limits are far below this.
MAX_LINE_SIZE = 16 * 1024
#: Pending connections the kernel queues for us (capped by net.core.somaxconn). With
#: asyncio's default of 128, a burst of 1,000 clients overflows the queue and waits
#: for SYN retries.
BACKLOG = 4096

SERVER_OPTIONS: dict[str, Any] = {
    "max_field_size": MAX_FIELD_SIZE,
    "max_line_size": MAX_LINE_SIZE,
    # Request bodies (uploads) buffer this much before reading pauses.
    "read_bufsize": 1 << 19,
    # A client whose connection is lost (a reset, or a write that fails) cancels its
    # handler, which closes its upstream request. A FIN alone may be a half-close, and
    # what was sent whole is still answered (_QuietRequestHandler.eof_received).
    "handler_cancellation": True,
    "access_log_class": AccessLogger,
    # As the front's own (aiohttp 3.14's default is an hour).
    "keepalive_timeout": KEEPALIVE_TIMEOUT,
}


@dataclass(frozen=True, slots=True)
class ConnectionRules:
    """What aiohttp's connections share with the front: how long and large a request
    head may grow (``Limits``) and the budget of partial heads held over all
    connections, and whether a client that shut its sending side down is answered."""

    head_timeout: float
    max_head_size: int
    budget: HeadBudget
    answer_half_closed: bool = True


def _refusal(exc: BaseException | None) -> ProxyError:
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, LineTooLong):
        return RequestLineTooLong() if exc.args[1] == MAX_LINE_SIZE else HeadTooLarge()
    return NotHttp()


def _refused_framing(message: RawRequestMessage) -> ProxyError | None:
    return framing_refusal(
        message.method,
        message.upgrade or hdrs.UPGRADE in message.headers,
        message.headers.get(hdrs.CONTENT_LENGTH),
    )


class _QuietRequestHandler(RequestHandler):
    __slots__ = (
        "_answered",
        "_client_done",
        "_head",
        "_last_payload",
        "_refusing",
        "rules",
    )

    def __init__(self, *args: Any, rules: ConnectionRules, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules
        #: A request was refused: nothing more is read.
        self._refusing = False
        #: The client has sent all it will (it shut its side down).
        self._client_done = False
        #: Requests answered, against aiohttp's count of those parsed (``_request_count``).
        self._answered = 0
        #: The body of the request parsed last.
        self._last_payload: StreamReader | None = None
        #: A head arriving while every request is answered: its time and bytes.
        self._head = HeadWatch(rules.budget, rules.head_timeout, self._head_too_slow)

    # aiohttp declares None; asyncio.Protocol lets a true value keep the transport open.
    def eof_received(self) -> bool:  # type: ignore[override]
        """The client will send nothing more (``shutdown(SHUT_WR)``, ``nc -N``): the
        requests it sent whole are still answered, as nginx does, then the connection
        closes. With nothing whole to answer, it closes now."""
        if not self.rules.answer_half_closed:
            return False  # aiohttp's way: gone, and the handler is cancelled
        self._client_done = True
        last = self._last_payload
        if last is not None and not last.is_eof():  # its body will never come whole
            if not (self._messages and self._messages[-1][1] is last):
                return False  # being handled: closing cancels it, as for a client gone
            self._messages.pop()  # not started: dropped, unanswered
            self._request_count -= 1
        return self._answered < self._request_count

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        finished = await super().finish_response(request, resp, start_time)
        self._answered += 1
        if self._client_done and self._answered >= self._request_count:
            self.force_close()  # what was written is still delivered
        return finished

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head.end()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            return
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            self._last_payload = self._messages[-1][1]
            self._head.end()
            self._screen(queued)
        elif data and self._answered == self._request_count:
            self._head_arriving(len(data))

    def _head_arriving(self, size: int) -> None:
        """Bytes of a new head arrived, every request before it answered: time it and
        bound it as the front does its connections' first heads."""
        held = self._head.held + size
        if held > self.rules.max_head_size:
            self._refuse_now(HeadTooLarge())
        elif not self._head.hold(held):
            self._refuse_now(SlowHeadsOverBudget())

    def _head_too_slow(self) -> None:
        self._refuse_now(HeadTooSlow())

    def _refuse_now(self, error: ProxyError) -> None:
        """Answer ``error`` as the next request, then close; nothing more is read."""
        self._head.end()
        self._queue_refusal(error)
        self._request_count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _queue_refusal(self, error: ProxyError) -> None:
        """``error`` is the last request to answer: nothing after it is read."""
        self._messages.append((_ErrInfo(error.status, error, error.message), EMPTY_PAYLOAD))
        self._refusing = True

    def _screen(self, first_new: int) -> None:
        """Replace the first newly parsed request that :func:`framing_refusal` refuses
        with its refusal, and drop what was parsed after it."""
        messages = self._messages
        for index in range(first_new, len(messages)):
            message = messages[index][0]
            if isinstance(message, _ErrInfo):
                return  # aiohttp refuses it, and parses nothing after it
            error = _refused_framing(message)
            if error is not None:
                self._request_count -= len(messages) - index - 1
                while len(messages) > index:
                    messages.pop()
                self._queue_refusal(error)
                # A declined upgrade's remains are not read again after its answer.
                self._upgraded = False
                self._message_tail = b""
                return

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is closed instead")
        error = ProxyError("The proxy failed; this is a bug.") if status >= 500 else _refusal(exc)
        log_connection_refusal(request.remote, error)
        answer = error_answer(error, "")
        response = web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        response.headers[hdrs.CONNECTION] = "close"
        response.headers[hdrs.SERVER] = SERVER
        response.force_close()
        return response


class _QuietServer(web.Server):
    rules: ConnectionRules

    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, rules=self.rules, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """An ``AppRunner`` whose connections use :class:`_QuietRequestHandler`, with
    ``rules`` (``answer_half_closed`` false: a client that shut down its sending side
    is taken as gone and its handler cancelled, aiohttp's way, which the emulator keeps:
    its test routes count the calls a client abandoned)."""

    def __init__(
        self, app: web.Application, *, rules: ConnectionRules | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.rules = rules or ConnectionRules(
            head_timeout=ListenSettings().head_timeout,
            max_head_size=MAX_HEAD_SIZE,
            budget=HeadBudget(),
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds the Server itself; only the protocol factory differs.
        server.__class__ = _QuietServer
        cast(_QuietServer, server).rules = self.rules
        return server


async def start(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
    answer_half_closed: bool = True,
) -> ProxyRunner:
    """Start ``app`` on ``host:port``; the caller awaits ``runner.cleanup()``."""
    settings = app.get(SETTINGS)  # the emulator has none
    rules = ConnectionRules(
        head_timeout=(settings.listen if settings else ListenSettings()).head_timeout,
        max_head_size=MAX_HEAD_SIZE,
        budget=HeadBudget(),
        answer_half_closed=answer_half_closed,
    )
    runner = ProxyRunner(app, rules=rules, shutdown_timeout=shutdown_timeout, **SERVER_OPTIONS)
    await runner.setup()
    try:
        site = EagerSite(
            runner,
            host,
            port,
            reuse_port=reuse_port,
            backlog=BACKLOG,
            front=_front(app, runner, rules, shutdown_timeout),
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class _DeclinesAll:
    """The lane of an app whose requests aiohttp answers, every one (Redis sessions, or
    not the proxy): the front still judges each connection's first head."""

    def take(self, head: Head) -> Job | None:
        return None


def _front(
    app: web.Application, runner: web.AppRunner, rules: ConnectionRules, shutdown_timeout: float
) -> Front:
    """The first reader of each connection, answering plain ``/api/*`` requests itself
    (the app must be started: the lane reads its sessions)."""
    lane = api_lane(app)
    settings = app.get(SETTINGS)  # the emulator has none
    limits = Limits(
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
        max_whole_body=0 if lane is None else lane.max_whole_body,
        body_stall=(settings.upstream if settings else UpstreamSettings()).timeout,
        head_timeout=rules.head_timeout,
        max_head_size=rules.max_head_size,
    )
    # runner.server is None once the runner shuts down.
    return Front(
        _DeclinesAll() if lane is None else lane,
        lambda: runner.server() if runner.server else None,
        limits,
        refusal=connection_refusal,
        shutdown_timeout=shutdown_timeout,
        head_budget=rules.budget,
    )


async def serve_until_signalled(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    announce: Callable[[], None],
    reuse_port: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM; then drain for at most ``shutdown_timeout``.

    While draining, requests are still served but ``/readyz`` answers 503.
    """
    runner = await start(
        app, host=host, port=port, shutdown_timeout=shutdown_timeout, reuse_port=reuse_port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # What start-up built (modules, the app, its clients) lives as long as the process:
    # frozen, a full collection no longer walks it, which shortens the pauses that
    # make up the tail latency under load.
    gc.collect()
    gc.freeze()
    announce()
    try:
        await stop.wait()
        lifecycle = app.get(LIFECYCLE)
        if lifecycle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(shutdown_timeout):
                    await lifecycle.drain()
    finally:
        await runner.cleanup()
