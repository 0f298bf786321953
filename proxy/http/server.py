"""aiohttp's server as the proxy runs it: its limits, quiet parser errors, and the
requests no transport may take refused.

aiohttp answers a request its parser refuses (an oversized header, a bad request
line) before any middleware runs, with a page that quotes the first 100 bytes of
the offending line and a logged traceback doing the same. For a ``Cookie`` header
that is a session cookie. :class:`ProxyRunner` answers those with a plain JSON error
that quotes nothing, and closes the connection.

Its connections also refuse, as the front does, the requests no transport may take
(:func:`proxy.http.heads.framing_refusal`): aiohttp's parser would otherwise take them,
and after a declined non-websocket ``Upgrade`` it stops framing what follows.

What of aiohttp's internals this needs goes through :mod:`proxy.http.seams`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader

from proxy.config import ListenSettings
from proxy.errors import (
    HeadTooLarge,
    HeadTooSlow,
    NotHttp,
    ProxyError,
    RequestLineTooLong,
    SlowHeadsOverBudget,
    error_answer,
)
from proxy.http.answers import SERVER, log_connection_refusal
from proxy.http.heads import MAX_HEAD_SIZE, framing_refusal
from proxy.http.limits import KEEPALIVE_TIMEOUT, HeadBudget, HeadWatch
from proxy.http.seams import Handler, HandlerRunner, line_limit

__all__ = [
    "BACKLOG",
    "CONNECTION_OPTIONS",
    "MAX_FIELD_SIZE",
    "MAX_LINE_SIZE",
    "ConnectionRules",
    "ProxyRunner",
]

#: Cookie headers of at least 16 KiB must be accepted (chunked sessions).
MAX_FIELD_SIZE = 32 * 1024
#: The request line: path and query. Zoom's own limits are far below this.
MAX_LINE_SIZE = 16 * 1024
#: Pending connections the kernel queues for us (capped by net.core.somaxconn). With
#: asyncio's default of 128, a burst of 1,000 clients overflows the queue and waits
#: for SYN retries.
BACKLOG = 4096

#: The runner's options for its connections (the access log, from ``proxy.observe``, is
#: added where the server is wired: ``proxy.serve.SERVER_OPTIONS``).
CONNECTION_OPTIONS: dict[str, Any] = {
    "max_field_size": MAX_FIELD_SIZE,
    "max_line_size": MAX_LINE_SIZE,
    # Request bodies (uploads) buffer this much before reading pauses.
    "read_bufsize": 1 << 19,
    # A client whose connection is lost (a reset, or a write that fails) cancels its
    # handler, which closes its upstream request. A FIN alone may be a half-close, and
    # what was sent whole is still answered (_QuietRequestHandler.eof_received).
    "handler_cancellation": True,
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
        return RequestLineTooLong() if line_limit(exc) == MAX_LINE_SIZE else HeadTooLarge()
    return NotHttp()


def _refused_framing(message: RawRequestMessage) -> ProxyError | None:
    return framing_refusal(
        message.method,
        message.upgrade or hdrs.UPGRADE in message.headers,
        message.headers.get(hdrs.CONTENT_LENGTH),
    )


class _QuietRequestHandler(Handler):
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
        #: Requests answered, against aiohttp's count of those parsed (``parsed``).
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
            queued = self.queued
            if not (queued and queued[-1][1] is last):
                return False  # being handled: closing cancels it, as for a client gone
            queued.pop()  # not started: dropped, unanswered
            self.parsed -= 1
        return self._answered < self.parsed

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        finished = await super().finish_response(request, resp, start_time)
        self._answered += 1
        if self._client_done and self._answered >= self.parsed:
            self.force_close()  # what was written is still delivered
        return finished

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head.end()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            return
        queued = self.queued
        before = len(queued)
        super().data_received(data)
        if len(queued) > before:
            self._last_payload = queued[-1][1]
            self._head.end()
            self._screen(before)
        elif data and self._answered == self.parsed:
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
        self.parsed += 1
        self.wake()

    def _queue_refusal(self, error: ProxyError) -> None:
        """``error`` is the last request to answer: nothing after it is read."""
        self.queue_refusal(error.status, error, error.message)
        self._refusing = True

    def _screen(self, first_new: int) -> None:
        """Replace the first newly parsed request that :func:`framing_refusal` refuses
        with its refusal, and drop what was parsed after it."""
        queued = self.queued
        for index in range(first_new, len(queued)):
            message = queued[index][0]
            if not isinstance(message, RawRequestMessage):
                return  # aiohttp refuses it, and parses nothing after it
            error = _refused_framing(message)
            if error is not None:
                self.parsed -= len(queued) - index - 1
                while len(queued) > index:
                    queued.pop()
                self._queue_refusal(error)
                # A declined upgrade's remains are not read again after its answer.
                self.forget_upgrade()
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


class ProxyRunner(HandlerRunner):
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

    def connection_handler(
        self, server: web.Server, loop: asyncio.AbstractEventLoop, options: dict[str, Any]
    ) -> _QuietRequestHandler:
        return _QuietRequestHandler(server, loop=loop, rules=self.rules, **options)
