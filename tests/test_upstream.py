"""The lean upstream client (:class:`proxy.http.client.Pool`) against raw servers on loopback.

Each fake server reads the request bytes as they came and answers exactly the bytes a
test needs, edge cases no real server would produce included.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import cast

import pytest
from aiohttp.test_utils import unused_port

from proxy.errors import UpstreamTimeout, UpstreamUnreachable
from proxy.http.client import BodyBrokeOff, Pool, Response

#: How long anything that should happen at once may take before the test fails instead of hanging.
GUARD = 5.0
#: A timeout that is itself the behaviour under test.
SHORT = 0.2
#: The most asyncio's socket transport reads in one go (beyond the client's own limit).
ONE_READ = 256 * 1024

Handler = Callable[["Conn"], Awaitable[None]]


class Conn:
    """The server's side of one accepted connection."""

    def __init__(
        self,
        server: FakeServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        index: int,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index
        self.requests: list[bytes] = []
        #: Set once the client has closed its side of the connection.
        self.ended = asyncio.Event()

    async def read_request(self) -> bytes:
        """One request, head and body, exactly as sent; ``b""`` if the client closed instead."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise AssertionError(f"the client left mid-request: {exc.partial!r}") from exc
            self.ended.set()
            return b""
        fields = dict(
            line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
        )
        body = b""
        if b"content-length" in fields:
            body = await self.reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                body += size_line
                size = int(size_line[:-2], 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        request = head + body
        self.requests.append(request)
        self.server.requests.append(request)
        return request

    async def read_to_end(self) -> bytes:
        """Whatever the client still sends, until it closes the connection."""
        rest = await self.reader.read()
        self.ended.set()
        return rest

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


class FakeServer:
    """A raw HTTP server on loopback: ``handler`` runs once per accepted connection."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connections: list[Conn] = []
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def head(self, method: str, target: str, *lines: str) -> bytes:
        """The request head a client is expected to send to this server."""
        text = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        return (text + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(self, reader, writer, len(self.connections))
        self.connections.append(conn)
        self._tasks.append(asyncio.get_running_loop().create_task(self._serve(conn)))

    async def _serve(self, conn: Conn) -> None:
        try:
            await self._handler(conn)
        except Exception as exc:  # surfaced when the test ends
            self.errors.append(exc)
        finally:
            conn.writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            conn.writer.transport.abort()  # the test is over: nothing is left to deliver
            with suppress(ConnectionError):
                await conn.writer.wait_closed()


Serve = Callable[[Handler], Awaitable[FakeServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[FakeServer] = []

    async def start(handler: Handler) -> FakeServer:
        server = FakeServer(handler)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
    for server in started:
        if server.errors:
            raise server.errors[0]


class Pools:
    """Makes pools with test-friendly defaults, and closes them all when the test ends."""

    def __init__(self) -> None:
        self.made: list[Pool] = []

    def __call__(
        self,
        origin: str,
        *,
        limit: int = 10,
        connect_timeout: float = 2.0,
        read_timeout: float = 2.0,
        buffer_limit: int = 1 << 20,
        idle_timeout: float = 15.0,
    ) -> Pool:
        pool = Pool(
            origin,
            limit=limit,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            buffer_limit=buffer_limit,
            idle_timeout=idle_timeout,
        )
        self.made.append(pool)
        return pool


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    made = Pools()
    yield made
    for pool in made.made:
        pool.close()


def answer(body: bytes, *lines: bytes) -> bytes:
    """A complete keep-alive 200 with ``body`` and its Content-Length."""
    extra = b"".join(line + b"\r\n" for line in lines)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def first_then_fresh(first: Handler) -> Handler:
    """``first`` on the first connection; any later one answers every request "fresh"."""

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await first(conn)
        else:
            await answer_all(conn, b"fresh")

    return handler


async def answer_all(conn: Conn, body: bytes = b"ok") -> None:
    """Answer every request on the connection with ``body``, until the client closes it."""
    while await conn.read_request():
        conn.send(answer(body))


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def wait(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), GUARD)


async def fetch(pool: Pool, target: str = "/x") -> bytes:
    """GET ``target`` and return its body, releasing the response."""
    response = await asyncio.wait_for(pool.request("GET", target, [], None), GUARD)
    try:
        return await asyncio.wait_for(response.read(), GUARD)
    finally:
        response.release()


async def sent(
    serve: Serve,
    pools: Pools,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | AsyncIterator[bytes] | None,
    content_length: int | None = None,
) -> tuple[FakeServer, bytes]:
    """Send one request to a server that answers it; the bytes the server received."""
    server = await serve(answer_all)
    response = await asyncio.wait_for(
        pools(server.origin).request(method, target, headers, body, content_length=content_length),
        GUARD,
    )
    assert await asyncio.wait_for(response.read(), GUARD) == b"ok"
    response.release()
    [request] = server.requests
    return server, request


async def collect(response: Response, into: bytearray) -> None:
    async for chunk in response.chunks():
        into += chunk


async def get_fails(pool: Pool, error: type[Exception]) -> None:
    """``GET /x`` fails with ``error``, and leaves no connection in use or idle."""
    with pytest.raises(error):
        await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    assert (pool.in_use, pool.idle) == (0, 0)


async def body_before_it_broke_off(pool: Pool) -> bytes:
    """What ``GET /x``'s body gave before :class:`BodyBrokeOff`; the connection is not
    kept, in use or idle."""
    response = await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    received = bytearray()
    with pytest.raises(BodyBrokeOff):
        await asyncio.wait_for(collect(response, received), GUARD)
    response.release()
    assert (pool.in_use, pool.idle) == (0, 0)
    return bytes(received)


# -- the request on the wire ----------------------------------------------------------------


async def test_the_target_goes_out_byte_for_byte(serve: Serve, pools: Pools) -> None:
    target = "/v2/meetings/%252FajXp%253D%253D?a=%2F"
    server, request = await sent(serve, pools, "GET", target, [], None)
    assert request.split(b"\r\n")[0] == f"GET {target} HTTP/1.1".encode()
    assert request == server.head("GET", target)


async def test_host_names_the_origin_with_its_port(serve: Serve, pools: Pools) -> None:
    server, request = await sent(serve, pools, "GET", "/x", [], None)
    assert request.split(b"\r\n")[1] == f"Host: 127.0.0.1:{server.port}".encode()


async def test_headers_go_out_in_order_with_repeats(serve: Serve, pools: Pools) -> None:
    headers = [("Accept", "application/json"), ("X-Multi", "1"), ("X-Multi", "2"), ("A", "b")]
    server, request = await sent(serve, pools, "GET", "/x", headers, None)
    assert request == server.head(
        "GET", "/x", "Accept: application/json", "X-Multi: 1", "X-Multi: 2", "A: b"
    )


@pytest.mark.parametrize("body", [None, b""], ids=["none", "empty-bytes"])
async def test_a_get_without_a_body_has_no_content_length(
    serve: Serve, pools: Pools, body: bytes | None
) -> None:
    server, request = await sent(serve, pools, "GET", "/x", [], body)
    assert request == server.head("GET", "/x")


async def test_a_bytes_body_goes_out_with_its_content_length(serve: Serve, pools: Pools) -> None:
    body = b'{"topic": "weekly"}'
    server, request = await sent(serve, pools, "POST", "/m", [("Content-Type", "t")], body)
    assert request == server.head("POST", "/m", "Content-Type: t", "Content-Length: 19") + body


async def test_a_large_bytes_body_goes_out_whole(serve: Serve, pools: Pools) -> None:
    body = random.Random(1).randbytes(200_000)
    server, request = await sent(serve, pools, "PATCH", "/m", [], body)
    assert request == server.head("PATCH", "/m", "Content-Length: 200000") + body


async def test_a_post_with_an_empty_body_sends_content_length_zero(
    serve: Serve, pools: Pools
) -> None:
    server, request = await sent(serve, pools, "POST", "/m", [], b"")
    assert request == server.head("POST", "/m", "Content-Length: 0")


async def test_a_streamed_body_of_known_length_goes_out_raw_with_that_length(
    serve: Serve, pools: Pools
) -> None:
    body = pieces(b"abc", b"defg")
    server, request = await sent(serve, pools, "POST", "/up", [], body, content_length=7)
    assert request == server.head("POST", "/up", "Content-Length: 7") + b"abcdefg"


async def test_a_streamed_body_of_unknown_length_goes_out_chunked(
    serve: Serve, pools: Pools
) -> None:
    server, request = await sent(serve, pools, "POST", "/up", [], pieces(b"abc", b"0123456789ab"))
    chunks = b"3\r\nabc\r\nc\r\n0123456789ab\r\n0\r\n\r\n"
    assert request == server.head("POST", "/up", "Transfer-Encoding: chunked") + chunks


async def test_empty_pieces_of_a_streamed_body_do_not_end_it_early(
    serve: Serve, pools: Pools
) -> None:
    server, request = await sent(serve, pools, "POST", "/up", [], pieces(b"ab", b"", b"cd"))
    chunks = b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
    assert request == server.head("POST", "/up", "Transfer-Encoding: chunked") + chunks


async def test_a_streamed_body_declared_empty_goes_out_with_content_length_zero(
    serve: Serve, pools: Pools
) -> None:
    server, request = await sent(serve, pools, "PUT", "/s", [], pieces(), content_length=0)
    assert request == server.head("PUT", "/s", "Content-Length: 0")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_put_and_patch_with_an_empty_body_send_content_length_zero(
    serve: Serve, pools: Pools, method: str
) -> None:
    server, request = await sent(serve, pools, method, "/m", [], b"")
    assert request == server.head(method, "/m", "Content-Length: 0")


@pytest.mark.parametrize("method", ["DELETE", "OPTIONS"])
async def test_delete_and_options_without_a_body_have_no_content_length(
    serve: Serve, pools: Pools, method: str
) -> None:
    server, request = await sent(serve, pools, method, "/m", [], b"")
    assert request == server.head(method, "/m")


async def test_a_streamed_body_longer_than_declared_stops_at_the_declared_length(
    serve: Serve, pools: Pools
) -> None:
    received: list[bytes] = []

    async def record_everything(conn: Conn) -> None:
        received.append(await conn.read_to_end())

    server = await serve(record_everything)
    pool = pools(server.origin)
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(
            pool.request("POST", "/up", [], pieces(b"abc", b"def"), content_length=4), GUARD
        )
    await wait(server.connections[0].ended)
    # Never a byte beyond the declared length: Zoom would read it as another request.
    assert received == [server.head("POST", "/up", "Content-Length: 4") + b"abc"]
    assert (pool.in_use, pool.idle) == (0, 0)


async def test_a_streamed_body_shorter_than_declared_is_refused(serve: Serve, pools: Pools) -> None:
    async def read_to_end(conn: Conn) -> None:
        await conn.read_to_end()

    server = await serve(read_to_end)
    pool = pools(server.origin)
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(
            pool.request("POST", "/up", [], pieces(b"ab"), content_length=5), GUARD
        )
    [conn] = server.connections
    await wait(conn.ended)
    assert (pool.in_use, pool.idle) == (0, 0)


async def test_zoom_gets_read_timeout_from_the_end_of_a_slow_upload(
    serve: Serve, pools: Pools
) -> None:
    async def slow_client() -> AsyncIterator[bytes]:
        yield b"ab"
        await asyncio.sleep(3 * SHORT)  # the behaviour under test: a slow uploader
        yield b"cd"

    server = await serve(answer_all)
    pool = pools(server.origin, read_timeout=SHORT)
    response = await asyncio.wait_for(
        pool.request("POST", "/up", [], slow_client(), content_length=4), GUARD
    )
    assert await asyncio.wait_for(response.read(), GUARD) == b"ok"
    response.release()
    assert server.requests == [server.head("POST", "/up", "Content-Length: 4") + b"abcd"]


async def test_zoom_that_stops_taking_the_body_times_out(serve: Serve, pools: Pools) -> None:
    async def endless() -> AsyncIterator[bytes]:
        chunk = bytes(1 << 20)
        while True:
            yield chunk

    async def reads_only_the_head(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.ended.wait()

    server = await serve(reads_only_the_head)
    pool = pools(server.origin, read_timeout=SHORT)
    with pytest.raises(UpstreamTimeout):
        await asyncio.wait_for(pool.request("POST", "/up", [], endless()), GUARD)
    assert (pool.in_use, pool.idle) == (0, 0)


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nX-Injected: 1"])
async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(
    serve: Serve, pools: Pools, value: str
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin)
    with pytest.raises(ValueError, match="line break"):
        await pool.request("GET", "/bad", [("X-Evil", value)], None)
    assert (pool.in_use, pool.idle) == (0, 0)
    assert await fetch(pool, "/good") == b"ok"
    assert server.requests == [server.head("GET", "/good")]
    assert len(server.connections) == 1


# -- keep-alive -----------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(serve: Serve, pools: Pools) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin)
    assert await fetch(pool, "/1") == b"ok"
    assert await fetch(pool, "/2") == b"ok"
    assert len(server.connections) == 1
    assert server.connections[0].requests == [server.head("GET", "/1"), server.head("GET", "/2")]


async def test_a_released_response_puts_its_connection_back_in_the_pool(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    assert (pool.in_use, pool.idle) == (1, 0)
    assert await asyncio.wait_for(response.read(), GUARD) == b"ok"
    response.release()
    assert (pool.in_use, pool.idle) == (0, 1)


@pytest.mark.parametrize(
    "closing",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_a_connection_zoom_will_close_is_not_reused(
    serve: Serve, pools: Pools, closing: bytes
) -> None:
    async def first(conn: Conn) -> None:
        await conn.read_request()
        conn.send(closing)  # and leave the connection open: the client must close it
        assert await conn.read_to_end() == b""

    server = await serve(first_then_fresh(first))
    pool = pools(server.origin)
    assert await fetch(pool) == b"ok"
    assert (pool.in_use, pool.idle) == (0, 0)
    await wait(server.connections[0].ended)
    assert await fetch(pool) == b"fresh"
    assert len(server.connections) == 2


# -- response bodies ------------------------------------------------------------------------

FRAMINGS = {
    "content-length": [b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\nhello, ", b"0\r\n\r\n world"],
    "chunked": [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nhello, \r\n",
        b"a\r\n0\r\n\r\n worl\r\n1\r\nd\r\n0\r\n\r\n",
    ],
    "until-close": [b"HTTP/1.1 200 OK\r\n\r\nhello, ", b"0\r\n\r\n world"],
}


@pytest.mark.parametrize("reader", ["read", "chunks"])
@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_the_body_is_read_exactly(
    serve: Serve, pools: Pools, framing: str, reader: str
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        for part in FRAMINGS[framing]:
            conn.send(part)
            await conn.writer.drain()
        if framing == "until-close":
            conn.close()
        else:
            await conn.read_to_end()

    server = await serve(handler)
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    if reader == "read":
        body = await asyncio.wait_for(response.read(), GUARD)
    else:
        received = bytearray()
        await asyncio.wait_for(collect(response, received), GUARD)
        body = bytes(received)
    response.release()
    assert body == b"hello, 0\r\n\r\n world"


async def test_a_head_response_has_no_body_and_its_connection_is_not_reused(
    serve: Serve, pools: Pools
) -> None:
    """llhttp still waits for the 1,234 bytes announced: a server sending them anyway
    would have them read as the next request's answer."""

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("HEAD", "/x", [], None), GUARD)
    assert response.content_length == 1234
    assert response.bodiless
    assert await asyncio.wait_for(response.read(), GUARD) == b""
    response.release()
    assert (pool.in_use, pool.idle) == (0, 0)
    assert await fetch(pool) == b"fresh"
    assert len(server.connections) == 2


#: A whole answer where none may be: were it read, one caller would get another's answer.
FOREIGN_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nanother answer"


@pytest.mark.parametrize("when", ["same_write", "later_write", "after_the_next_request"])
async def test_a_body_sent_after_a_head_answer_reaches_nobody(
    serve: Serve, pools: Pools, when: str
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(FOREIGN_ANSWER)
        if when == "same_write":
            conn.send(head + FOREIGN_ANSWER)
        else:
            conn.send(head)
            await conn.writer.drain()
            # The slowest stray body arrives once the connection carries the next request.
            if when == "after_the_next_request" and await conn.read_request():
                conn.send(FOREIGN_ANSWER)
            conn.send(FOREIGN_ANSWER)
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("HEAD", "/x", [], None), GUARD)
    assert await asyncio.wait_for(response.read(), GUARD) == b""
    response.release()
    assert await fetch(pool) == b"fresh"
    assert await fetch(pool) == b"fresh"
    await wait(server.connections[0].ended)


@pytest.mark.parametrize("status", [204, 304])
async def test_bytes_after_a_bodiless_status_close_the_connection(
    serve: Serve, pools: Pools, status: int
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 %d X\r\nContent-Length: 14\r\n\r\n%b" % (status, FOREIGN_ANSWER))
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    assert response.status == status
    assert response.bodiless
    assert await asyncio.wait_for(response.read(), GUARD) == b""
    response.release()
    assert await fetch(pool) == b"fresh"
    await wait(server.connections[0].ended)
    assert pool.idle == 1  # the fresh connection only


async def test_bytes_after_a_complete_answer_close_the_connection(
    serve: Serve, pools: Pools
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(answer(b"mine") + FOREIGN_ANSWER)
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    assert await fetch(pool) == b"mine"
    assert await fetch(pool) == b"fresh"
    await wait(server.connections[0].ended)


async def test_bytes_arriving_while_idle_close_the_connection(serve: Serve, pools: Pools) -> None:
    released = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(answer(b"mine"))
        await wait(released)
        conn.send(FOREIGN_ANSWER)
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    assert await fetch(pool) == b"mine"
    assert pool.idle == 1
    released.set()
    await wait(server.connections[0].ended)
    assert pool.idle == 0
    assert await fetch(pool) == b"fresh"


NASTY_LENGTHS = ["0" * 5000 + "5", "18446744073709551616", "+5", "5 5", "0x5", "", "-1", "5,5"]


@pytest.mark.parametrize("length", NASTY_LENGTHS, ids=lambda value: repr(value[:12]))
async def test_any_content_length_from_zoom_gives_its_body_or_a_502(
    serve: Serve, pools: Pools, length: str
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %b\r\n\r\nhello" % length.encode())
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    try:
        response = await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    except UpstreamUnreachable:
        pass
    else:
        try:
            assert await asyncio.wait_for(response.read(), GUARD) == b"hello"
        finally:
            response.release()
    assert await fetch(pool) == b"fresh"


async def test_a_protocol_switch_nobody_asked_for_is_502(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + FOREIGN_ANSWER)
        await conn.read_to_end()

    server = await serve(first_then_fresh(handler))
    pool = pools(server.origin)
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    assert await fetch(pool) == b"fresh"
    await wait(server.connections[0].ended)


async def test_informational_responses_are_skipped(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            + answer(b"final", b"X-Final: yes")
        )
        await conn.read_to_end()

    server = await serve(handler)
    response = await asyncio.wait_for(pools(server.origin).request("GET", "/x", [], None), GUARD)
    assert response.status == 200
    assert response.headers == [(b"Content-Length", b"5"), (b"X-Final", b"yes")]
    assert await asyncio.wait_for(response.read(), GUARD) == b"final"
    response.release()


# -- failures before the answer -------------------------------------------------------------


async def test_zoom_closing_before_answering_is_unreachable(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.close()

    server = await serve(handler)
    pool = pools(server.origin)
    await get_fails(pool, UpstreamUnreachable)


async def test_zoom_never_answering_times_out_after_read_timeout(
    serve: Serve, pools: Pools
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.read_to_end()

    server = await serve(handler)
    pool = pools(server.origin, read_timeout=SHORT)
    await get_fails(pool, UpstreamTimeout)
    await wait(server.connections[0].ended)


async def test_a_refused_connection_is_unreachable(pools: Pools) -> None:
    pool = pools(f"http://127.0.0.1:{unused_port()}")
    await get_fails(pool, UpstreamUnreachable)


async def test_an_answer_that_is_not_http_is_unreachable(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"NOT HTTP\r\n\r\n")
        await conn.read_to_end()

    server = await serve(handler)
    pool = pools(server.origin)
    await get_fails(pool, UpstreamUnreachable)
    await wait(server.connections[0].ended)


# -- failures within the body ---------------------------------------------------------------


async def test_a_body_cut_short_by_a_close_breaks_off(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        conn.close()

    server = await serve(handler)
    pool = pools(server.origin)
    assert await body_before_it_broke_off(pool) == b"0123456789"


async def test_a_body_that_goes_silent_breaks_off_after_read_timeout(
    serve: Serve, pools: Pools
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await conn.read_to_end()

    server = await serve(handler)
    pool = pools(server.origin, read_timeout=SHORT)
    assert await body_before_it_broke_off(pool) == b"0123456789"
    await wait(server.connections[0].ended)


# -- a pooled connection Zoom closed --------------------------------------------------------


def closing_the_reused_connection(again: bytes) -> Handler:
    """Answer the first request, then close on the second without answering it, as a server
    does that drops an idle connection just as the client reuses it. Later connections
    answer ``again``."""

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.read_request()
            conn.send(answer(b"first"))
            await conn.read_request()
            conn.close()
        else:
            await answer_all(conn, again)

    return handler


@pytest.mark.parametrize(("method", "body"), [("GET", b""), ("PUT", b'{"topic": "x"}')])
async def test_an_idempotent_request_on_a_pooled_connection_zoom_closed_is_sent_again(
    serve: Serve, pools: Pools, method: str, body: bytes
) -> None:
    server = await serve(closing_the_reused_connection(b"again"))
    pool = pools(server.origin)
    assert await fetch(pool, "/1") == b"first"
    response = await asyncio.wait_for(pool.request(method, "/2", [], body), GUARD)
    assert await asyncio.wait_for(response.read(), GUARD) == b"again"
    response.release()
    assert len(server.connections) == 2
    assert server.connections[1].requests == [server.connections[0].requests[1]]
    assert server.connections[1].requests[0].startswith(f"{method} /2 HTTP/1.1\r\n".encode())


async def test_a_post_on_a_pooled_connection_zoom_closed_is_not_sent_again(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(closing_the_reused_connection(b"again"))
    pool = pools(server.origin)
    assert await fetch(pool, "/1") == b"first"
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(pool.request("POST", "/2", [], b"{}"), GUARD)
    posts = [request for request in server.requests if request.startswith(b"POST ")]
    assert posts == [server.head("POST", "/2", "Content-Length: 2") + b"{}"]
    assert len(server.connections) == 1
    assert (pool.in_use, pool.idle) == (0, 0)


async def test_a_streamed_body_on_a_pooled_connection_zoom_closed_is_not_sent_again(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(closing_the_reused_connection(b"again"))
    pool = pools(server.origin)
    assert await fetch(pool, "/1") == b"first"
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(pool.request("PUT", "/2", [], pieces(b"abc")), GUARD)
    assert len(server.connections) == 1
    assert len(server.requests) == 2


# -- pool management ------------------------------------------------------------------------


async def test_an_expired_idle_connection_is_not_reused(serve: Serve, pools: Pools) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin, idle_timeout=0)  # every pooled connection is already expired
    assert await fetch(pool, "/1") == b"ok"
    assert pool.idle == 1
    assert await fetch(pool, "/2") == b"ok"
    assert len(server.connections) == 2
    await wait(server.connections[0].ended)
    assert [conn.requests for conn in server.connections] == [
        [server.head("GET", "/1")],
        [server.head("GET", "/2")],
    ]


async def queued(pool: Pool, target: str, started: asyncio.Event) -> bytes:
    """GET ``target``; ``started`` is set just before the request runs up to its first wait."""
    started.set()
    response = await pool.request("GET", target, [], None)
    try:
        return await response.read()
    finally:
        response.release()


async def test_at_the_limit_a_request_waits_for_a_release(serve: Serve, pools: Pools) -> None:
    send_body = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.read_request()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            await send_body.wait()
            conn.send(b"first")
            await answer_all(conn, b"second")
        else:
            await answer_all(conn, b"second, on a connection over the limit")

    server = await serve(handler)
    pool = pools(server.origin, limit=1)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    started = asyncio.Event()
    second = asyncio.create_task(queued(pool, "/2", started))
    await wait(started)  # the second request has run up to its first wait
    send_body.set()
    assert await asyncio.wait_for(first.read(), GUARD) == b"first"
    assert not second.done()
    assert pool.in_use == 1
    first.release()
    assert await asyncio.wait_for(second, GUARD) == b"second"
    assert len(server.connections) == 1
    assert server.requests == [server.head("GET", "/1"), server.head("GET", "/2")]


async def test_at_the_limit_a_released_connection_goes_to_the_waiting_request_first(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin, limit=1)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    assert await asyncio.wait_for(first.read(), GUARD) == b"ok"
    started = asyncio.Event()
    waiting = asyncio.create_task(queued(pool, "/waiting", started))
    await wait(started)  # queued behind the limit
    first.release()
    # Asks again at once, as a busy client does, before the waiting request has run.
    async with asyncio.timeout(GUARD):  # in this task: wait_for would start a new one
        newcomer = await pool.request("GET", "/newcomer", [], None)
    assert await asyncio.wait_for(newcomer.read(), GUARD) == b"ok"
    newcomer.release()
    assert await asyncio.wait_for(waiting, GUARD) == b"ok"
    # The waiting request went first, on the released connection; nobody starved.
    assert server.requests == [
        server.head("GET", "/1"),
        server.head("GET", "/waiting"),
        server.head("GET", "/newcomer"),
    ]
    assert len(server.connections) == 1


async def test_at_the_limit_a_request_gives_up_after_connect_timeout(
    serve: Serve, pools: Pools
) -> None:
    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.read_request()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        await answer_all(conn, b"over the limit")

    server = await serve(handler)
    pool = pools(server.origin, limit=1, connect_timeout=SHORT)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(pool.request("GET", "/2", [], None), GUARD)
    assert pool.in_use == 1
    assert len(server.connections) == 1
    assert server.requests == [server.head("GET", "/1")]
    first.release()


async def test_a_waiter_cancelled_as_its_turn_comes_passes_the_turn_on(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin, limit=1)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    assert await asyncio.wait_for(first.read(), GUARD) == b"ok"
    started = asyncio.Event(), asyncio.Event()
    leaving = asyncio.create_task(queued(pool, "/leaving", started[0]))
    await wait(started[0])
    staying = asyncio.create_task(queued(pool, "/staying", started[1]))
    await wait(started[1])
    first.release()  # the connection goes back to the pool, and its turn to `leaving`...
    leaving.cancel()  # ...which is cancelled before it could run (a client gone, a timeout)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await asyncio.wait_for(staying, GUARD) == b"ok"
    assert server.requests == [server.head("GET", "/1"), server.head("GET", "/staying")]
    assert len(server.connections) == 1


async def let_the_loop_run(turns: int) -> None:
    """Be a slow consumer: give the event loop ``turns`` chances to read from sockets.

    Only how slow the reader is depends on this, never whether the test passes.
    """
    for _ in range(turns):
        await asyncio.sleep(0)


def answers_in_pieces(payload: bytes) -> Handler:
    """Answers the first request with ``payload``, sent 64 KiB at a time, then every other."""

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
        for start in range(0, len(payload), 1 << 16):
            conn.send(payload[start : start + (1 << 16)])
            await conn.writer.drain()
        await answer_all(conn)

    return handler


async def test_a_slow_reader_gets_every_byte_with_bounded_buffering(
    serve: Serve, pools: Pools
) -> None:
    payload = random.Random(13).randbytes(8 << 20)

    server = await serve(answers_in_pieces(payload))
    pool = pools(server.origin, buffer_limit=64 << 10)
    response = await asyncio.wait_for(pool.request("GET", "/big", [], None), GUARD)
    digest, received, largest = hashlib.sha256(), 0, 0

    async def consume() -> None:
        nonlocal received, largest
        async for chunk in response.chunks():
            digest.update(chunk)
            received += len(chunk)
            largest = max(largest, len(chunk))  # a chunk is all that was buffered
            await let_the_loop_run(20)

    await asyncio.wait_for(consume(), 4 * GUARD)
    response.release()
    assert received == len(payload)
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert largest <= pool.buffer_limit + ONE_READ


@pytest.mark.parametrize(
    ("slow_client", "slow_writer"),
    [(False, False), (True, False), (False, True)],
    ids=["fast", "slow-client", "slow-writer"],
)
async def test_a_body_streamed_to_the_client_arrives_whole_and_in_order(
    serve: Serve, pools: Pools, slow_client: bool, slow_writer: bool
) -> None:
    payload = random.Random(17).randbytes(8 << 20)

    delivered = asyncio.get_running_loop().create_future()

    async def client_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest, size = hashlib.sha256(), 0
        while chunk := await reader.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
            if slow_client:
                await let_the_loop_run(20)
        delivered.set_result((size, digest.hexdigest()))
        writer.close()

    client = await asyncio.start_server(client_side, "127.0.0.1", 0)
    server = await serve(answers_in_pieces(payload))
    pool = pools(server.origin, buffer_limit=64 << 10)
    _, to_client = await asyncio.open_connection(*client.sockets[0].getsockname()[:2])
    try:
        response = await asyncio.wait_for(pool.request("GET", "/big", [], None), GUARD)
        response.stream_to(cast(asyncio.Transport, to_client.transport))
        async for chunk in response.chunks():  # what did not go straight through
            if slow_writer:
                await let_the_loop_run(20)  # more of the body arrives meanwhile
            to_client.write(chunk)
            await to_client.drain()
        response.release()
        to_client.close()
        size, digest = await asyncio.wait_for(delivered, 4 * GUARD)
    finally:
        client.close()
    assert size == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert (pool.in_use, pool.idle) == (0, 1)


async def test_a_connection_whose_request_body_was_cut_short_is_never_reused(
    serve: Serve, pools: Pools
) -> None:
    answered = asyncio.Event()

    async def first(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        conn.send(answer(b"refused early"))  # without reading the body, and stays open
        await conn.read_to_end()

    abandoned = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        try:
            yield b"first piece"
            await answered.wait()
            yield b"a piece that arrives after Zoom answered"
        finally:
            abandoned.set()  # the sender stopped asking: it has given up on the rest

    server = await serve(first_then_fresh(first))
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("POST", "/up", [], upload()), GUARD)
    assert await asyncio.wait_for(response.read(), GUARD) == b"refused early"
    answered.set()
    await wait(abandoned)
    response.release()
    assert (pool.in_use, pool.idle) == (0, 0)
    assert await fetch(pool, "/next") == b"fresh"
    assert server.connections[1].requests == [server.head("GET", "/next")]


async def test_a_body_with_a_coding_other_than_chunked_runs_to_the_close(
    serve: Serve, pools: Pools
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\ncompressed bytes")
        conn.close()

    server = await serve(handler)
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("GET", "/g", [], None), GUARD)
    assert await asyncio.wait_for(response.read(), GUARD) == b"compressed bytes"
    response.release()


async def test_releasing_a_response_twice_leaves_the_next_exchange_alone(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    assert await asyncio.wait_for(first.read(), GUARD) == b"ok"
    first.release()
    second = await asyncio.wait_for(pool.request("GET", "/2", [], None), GUARD)
    first.release()  # late, and on the connection the second request now uses
    assert pool.in_use == 1
    assert await asyncio.wait_for(second.read(), GUARD) == b"ok"
    second.release()
    assert (pool.in_use, pool.idle, len(server.connections)) == (0, 1, 1)


async def test_idle_connections_past_their_time_are_closed_when_another_comes_back(
    serve: Serve, pools: Pools
) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin, idle_timeout=0)
    first = await asyncio.wait_for(pool.request("GET", "/1", [], None), GUARD)
    second = await asyncio.wait_for(pool.request("GET", "/2", [], None), GUARD)
    for response in (first, second):
        assert await asyncio.wait_for(response.read(), GUARD) == b"ok"
        response.release()
    await wait(server.connections[0].ended)  # the first one back was closed by the second
    assert (pool.in_use, pool.idle, len(server.connections)) == (0, 1, 2)


async def test_a_second_answer_to_one_request_discards_the_connection(
    serve: Serve, pools: Pools
) -> None:
    async def first(conn: Conn) -> None:
        await conn.read_request()
        conn.send(answer(b"one") + answer(b"two"))
        await conn.read_to_end()

    server = await serve(first_then_fresh(first))
    pool = pools(server.origin)
    assert await fetch(pool) == b"one"
    assert (pool.in_use, pool.idle) == (0, 0)
    await wait(server.connections[0].ended)
    assert await fetch(pool) == b"fresh"


async def test_data_on_an_idle_connection_drops_it_from_the_pool(
    serve: Serve, pools: Pools
) -> None:
    junk_now = asyncio.Event()

    async def first(conn: Conn) -> None:
        await conn.read_request()
        conn.send(answer(b"first"))
        await junk_now.wait()
        conn.send(b"junk")
        await conn.read_to_end()

    server = await serve(first_then_fresh(first))
    pool = pools(server.origin)
    assert await fetch(pool) == b"first"
    assert pool.idle == 1
    junk_now.set()
    await wait(server.connections[0].ended)
    assert (pool.in_use, pool.idle) == (0, 0)
    assert await fetch(pool) == b"fresh"
    assert len(server.connections) == 2


async def test_close_closes_idle_and_busy_connections(serve: Serve, pools: Pools) -> None:
    async def handler(conn: Conn) -> None:
        while request := await conn.read_request():
            if request.startswith(b"GET /hold "):
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            else:
                conn.send(answer(b"ok"))

    server = await serve(handler)
    pool = pools(server.origin)
    held = await asyncio.wait_for(pool.request("GET", "/hold", [], None), GUARD)
    assert await fetch(pool, "/done") == b"ok"
    assert (pool.in_use, pool.idle) == (1, 1)
    pool.close()
    assert pool.closed
    assert (pool.in_use, pool.idle) == (0, 0)
    for conn in server.connections:
        await wait(conn.ended)
    assert len(server.connections) == 2
    with pytest.raises(BodyBrokeOff):
        await asyncio.wait_for(held.read(), GUARD)
    held.release()


async def test_a_request_after_close_is_unreachable(serve: Serve, pools: Pools) -> None:
    server = await serve(answer_all)
    pool = pools(server.origin)
    pool.close()
    assert pool.closed
    with pytest.raises(UpstreamUnreachable):
        await asyncio.wait_for(pool.request("GET", "/x", [], None), GUARD)
    assert server.requests == []


def chunked_answer(payload: bytes, piece: int = 4096) -> Handler:
    """One 200 with ``payload`` in chunks of ``piece`` bytes, then "ok" to the rest."""

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(payload), piece):
            part = payload[start : start + piece]
            conn.send(b"%x\r\n%b\r\n" % (len(part), part))
            await conn.writer.drain()
        conn.send(b"0\r\n\r\n")
        await answer_all(conn)

    return handler


async def test_read_at_most_gives_a_small_chunked_body_whole(serve: Serve, pools: Pools) -> None:
    payload = random.Random(3).randbytes(10_000)
    server = await serve(chunked_answer(payload))
    response = await asyncio.wait_for(pools(server.origin).request("GET", "/", [], None), GUARD)
    assert await asyncio.wait_for(response.read_at_most(10_000), GUARD) == payload
    response.release()


async def test_a_body_over_read_at_most_still_arrives_whole_from_chunks(
    serve: Serve, pools: Pools
) -> None:
    """What was read to find the body too large is not lost: it comes first."""
    payload = random.Random(5).randbytes(100_000)
    server = await serve(chunked_answer(payload))
    pool = pools(server.origin)
    response = await asyncio.wait_for(pool.request("GET", "/", [], None), GUARD)
    assert await asyncio.wait_for(response.read_at_most(10_000), GUARD) is None
    received = b"".join([chunk async for chunk in response.chunks()])
    response.release()
    assert received == payload
    assert await fetch(pool) == b"ok"  # the connection ended where its framing said


async def test_read_at_most_reads_nothing_of_a_body_whose_length_is_over_it(
    serve: Serve, pools: Pools
) -> None:
    payload = random.Random(7).randbytes(100_000)
    server = await serve(answers_in_pieces(payload))
    response = await asyncio.wait_for(pools(server.origin).request("GET", "/", [], None), GUARD)
    assert await asyncio.wait_for(response.read_at_most(10_000), GUARD) is None
    assert await asyncio.wait_for(response.read(), GUARD) == payload
    response.release()
