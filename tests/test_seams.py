"""What :mod:`proxy.http.seams` relies on in aiohttp's internals, each checked against
the aiohttp installed: a release that changes one fails here first.

The connections are aiohttp's own, built by a real runner's server on one end of a
socket pair (or a loopback socket), and fed bytes through ``data_received`` as their
transport would.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import hdrs, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from proxy.http import seams

#: Small limits, to tell which one a line broke.
MAX_LINE_SIZE = 100
MAX_FIELD_SIZE = 200
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#: aiohttp stops parsing after an upgrade to a websocket (or a CONNECT), no other.
UPGRADE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
AFTER_UPGRADE = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"


async def _ok(request: web.BaseRequest) -> web.Response:
    return web.Response(text="ok")


class _Recording(seams.HandlerRunner):
    """Builds :class:`seams.Handler` connections and keeps them, with what it was given."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.handlers: list[seams.Handler] = []
        self.given: list[tuple[asyncio.AbstractEventLoop, dict[str, Any]]] = []

    def connection_handler(
        self, server: web.Server, loop: asyncio.AbstractEventLoop, options: dict[str, Any]
    ) -> seams.Handler:
        self.given.append((loop, dict(options)))
        handler = seams.Handler(server, loop=loop, **options)
        self.handlers.append(handler)
        return handler


@pytest.fixture
async def runner() -> AsyncIterator[_Recording]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _ok)
    runner = _Recording(app, max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE)
    await runner.setup()
    yield runner
    await runner.cleanup()


@dataclass
class Connection:
    """aiohttp's end of a connection, and the client's."""

    handler: seams.Handler
    client: asyncio.StreamReader

    async def answer(self) -> bytes:
        """One whole answer to a request (``ok``, or aiohttp's error page)."""
        head = await asyncio.wait_for(self.client.readuntil(b"\r\n\r\n"), 5)
        length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
        assert length is not None
        return head + await self.client.readexactly(int(length[1]))


@pytest.fixture
async def connection(runner: _Recording) -> AsyncIterator[Connection]:
    ours, theirs = socket.socketpair()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    transport, handler = await loop.connect_accepted_socket(runner.server, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    assert isinstance(handler, seams.Handler)
    try:
        yield Connection(handler, reader)
    finally:
        writer.close()
        transport.close()


@pytest.fixture
async def waiting(connection: Connection) -> Connection:
    """A connection whose task waits for a request."""
    for _ in range(100):  # it starts waiting within a few turns of the loop
        if connection.handler._waiter is not None:
            return connection
        await asyncio.sleep(0)
    raise AssertionError("the connection's task never waits")


def _first(handler: seams.Handler) -> RawRequestMessage | _ErrInfo:
    return handler.queued[0][0]


# The runner: BaseRunner._make_server, and the server's class swapped.


def test_a_runner_makes_its_server_in_a_coroutine_method() -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)


async def test_a_runners_connections_are_built_by_its_connection_handler(
    runner: _Recording,
) -> None:
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reader, writer = await asyncio.open_connection(*runner.addresses[0][:2])
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"ok")
    assert len(runner.handlers) == 1


async def test_the_connection_handler_is_given_the_loop_and_the_runners_options(
    runner: _Recording, connection: Connection
) -> None:
    [(loop, options)] = runner.given
    assert loop is asyncio.get_running_loop()
    assert options["max_line_size"] == MAX_LINE_SIZE
    assert options["max_field_size"] == MAX_FIELD_SIZE


# The handler's private state (seams.Handler).


@pytest.mark.parametrize(
    "name", ["_messages", "_request_count", "_waiter", "_upgraded", "_message_tail"]
)
async def test_a_connection_has_the_private_attribute(connection: Connection, name: str) -> None:
    assert hasattr(connection.handler, name)


@pytest.mark.parametrize("name", ["_loop", "_kwargs"])
async def test_a_server_has_the_private_attribute(runner: _Recording, name: str) -> None:
    assert hasattr(runner.server, name)


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("data_received", ["self", "data"]),
        ("eof_received", ["self"]),
        ("connection_lost", ["self", "exc"]),
        ("finish_response", ["self", "request", "resp", "start_time"]),
        ("handle_error", ["self", "request", "status", "exc", "message"]),
    ],
)
def test_an_overridden_method_keeps_its_parameters(method: str, parameters: list[str]) -> None:
    assert list(inspect.signature(getattr(RequestHandler, method)).parameters) == parameters


def test_a_refusal_holds_a_status_an_exception_and_a_message() -> None:
    exc = BadHttpMessage("no")
    info = _ErrInfo(431, exc, "too large")
    assert (info.status, info.exc, info.message) == (431, exc, "too large")


async def test_a_parsed_request_is_queued_with_its_body_and_counted(
    connection: Connection,
) -> None:
    connection.handler.data_received(REQUEST)
    [(message, body)] = connection.handler.queued
    assert isinstance(message, RawRequestMessage)
    assert message.path == "/"
    assert isinstance(body, StreamReader)
    assert connection.handler.parsed == 1


async def test_the_queue_stays_the_same_object_as_requests_arrive(
    connection: Connection,
) -> None:
    queued = connection.handler.queued
    connection.handler.data_received(REQUEST + REQUEST)
    assert connection.handler.queued is queued
    assert len(queued) == 2


async def test_a_request_the_parser_refuses_is_queued_as_a_refusal(
    connection: Connection,
) -> None:
    connection.handler.data_received(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
    refusal = _first(connection.handler)
    assert isinstance(refusal, _ErrInfo)
    assert refusal.status == 400
    assert connection.handler.parsed == 1


async def test_a_too_long_request_line_breaks_the_line_limit(connection: Connection) -> None:
    connection.handler.data_received(b"GET /" + b"a" * MAX_LINE_SIZE + b" HTTP/1.1\r\n")
    refusal = _first(connection.handler)
    assert isinstance(refusal, _ErrInfo)
    assert isinstance(refusal.exc, LineTooLong)
    assert seams.line_limit(refusal.exc) == MAX_LINE_SIZE


async def test_a_too_long_header_breaks_the_field_limit(connection: Connection) -> None:
    connection.handler.data_received(b"GET / HTTP/1.1\r\nCookie: " + b"a" * MAX_FIELD_SIZE)
    refusal = _first(connection.handler)
    assert isinstance(refusal, _ErrInfo)
    assert isinstance(refusal.exc, LineTooLong)
    assert seams.line_limit(refusal.exc) == MAX_FIELD_SIZE


async def test_an_idle_connections_task_awaits_its_waiter(waiting: Connection) -> None:
    waiter = waiting.handler._waiter
    assert isinstance(waiter, asyncio.Future)
    assert not waiter.done()


async def test_a_refusal_queued_and_woken_is_answered_with_its_status(
    waiting: Connection,
) -> None:
    waiting.handler.queue_refusal(431, BadHttpMessage("too large"), "too large")
    waiting.handler.parsed += 1
    waiting.handler.wake()
    status_line = (await waiting.answer()).partition(b"\r\n")[0]
    assert status_line.split()[1] == b"431"


async def test_after_an_upgrade_request_the_rest_is_kept_as_its_tail(
    connection: Connection,
) -> None:
    connection.handler.data_received(UPGRADE + AFTER_UPGRADE)
    assert connection.handler._upgraded is True
    assert connection.handler._message_tail == AFTER_UPGRADE
    assert connection.handler.parsed == 1


@pytest.mark.skipif(
    aiohttp.__version__ == "3.14.0",
    reason="aiohttp 3.14.0 does not parse a declined upgrade's tail after its answer;"
    " the proxy forgets the tail (forget_upgrade) on every 3.14.x",
)
async def test_a_declined_upgrades_tail_is_parsed_once_it_is_answered(
    waiting: Connection,
) -> None:
    waiting.handler.data_received(UPGRADE + AFTER_UPGRADE)
    await waiting.answer()
    await waiting.answer()
    assert waiting.handler.parsed == 2


async def test_a_forgotten_upgrades_tail_is_never_parsed(waiting: Connection) -> None:
    waiting.handler.data_received(UPGRADE + AFTER_UPGRADE)
    waiting.handler.forget_upgrade()
    await waiting.answer()
    assert waiting.handler.parsed == 1
    assert not waiting.handler.queued


# The parser's singleton headers.


def _header_names() -> Iterator[str]:
    """Every header name aiohttp knows, and one it does not."""
    for name, value in vars(hdrs).items():
        if name.isupper() and not name.startswith("METH_") and isinstance(value, str):
            yield value.lower()
    yield "x-custom"


#: Headers aiohttp refuses even once (an old websocket handshake's).
_REFUSED_ALONE = {"sec-websocket-key1"}


#: A value each header may take once.
_VALUES = {"content-length": "0", "transfer-encoding": "chunked"}


@pytest.mark.parametrize("name", sorted(set(_header_names()) - _REFUSED_ALONE))
async def test_the_parser_refuses_a_repeat_of_exactly_the_singleton_headers(
    connection: Connection, name: str
) -> None:
    value = _VALUES.get(name, "x")
    head = f"POST / HTTP/1.1\r\nHost: x\r\n{name}: {value}\r\n{name}: {value}\r\n\r\n"
    connection.handler.data_received(head.encode())
    refused = isinstance(_first(connection.handler), _ErrInfo)
    assert refused == (name in seams.SINGLETON_HEADERS)


# A site's server (BaseSite._server).


class _OwnSite(web.BaseSite):
    """A site that listens with a server of its own."""

    def __init__(self, runner: web.BaseRunner, server: asyncio.Server) -> None:
        super().__init__(runner)
        self.listening = server

    @property
    def name(self) -> str:
        return "own"

    async def start(self) -> None:
        await super().start()
        seams.set_site_server(self, self.listening)


@pytest.fixture
async def own_site(runner: _Recording) -> AsyncIterator[_OwnSite]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    site = _OwnSite(runner, server)
    await site.start()
    yield site
    server.close()


async def test_a_sites_server_gives_the_runner_its_addresses(
    runner: _Recording, own_site: _OwnSite
) -> None:
    assert runner.addresses == [sock.getsockname() for sock in own_site.listening.sockets]


async def test_stopping_a_site_closes_its_server(own_site: _OwnSite) -> None:
    await own_site.stop()
    assert not own_site.listening.is_serving()


# Dates.


def test_http_date_is_an_imf_fixdate_of_now() -> None:
    value = seams.http_date()
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", value)
    assert abs(email.utils.parsedate_to_datetime(value).timestamp() - time.time()) < 2
