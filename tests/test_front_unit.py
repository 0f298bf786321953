"""What the connection's first reader takes as a plain head, and how a streamed body is fed."""

from __future__ import annotations

import asyncio

import pytest

from proxy.front import BodyStream, Limits, parse_head

LIMITS = Limits(max_line_size=100, max_field_size=200, max_whole_body=1000, body_stall=1.0)


def head_bytes(*lines: str, start: str = "GET /api/x?a=%252F HTTP/1.1", host: bool = True) -> bytes:
    """A head with ``lines``, after a ``Host`` unless ``host`` is false."""
    return ("\r\n".join([start, *(["Host: h"] if host else []), *lines]) + "\r\n\r\n").encode()


def test_a_plain_head_is_read_as_sent() -> None:
    head = parse_head(head_bytes("X-Trace: one", "x-trace: two", "Content-Length: 12"), LIMITS)
    assert head is not None
    assert head.method == "GET"
    assert head.target == "/api/x?a=%252F"
    assert head.headers == [
        ("Host", "h"),
        ("X-Trace", "one"),
        ("x-trace", "two"),
        ("Content-Length", "12"),
    ]
    assert head.first["x-trace"] == "one"
    assert head.repeated == {"x-trace"}
    assert head.content_length == 12
    assert head.keep_alive


def test_connection_close_and_an_expectation_are_seen() -> None:
    head = parse_head(head_bytes("Connection: close", "Expect: 100-Continue"), LIMITS)
    assert head is not None
    assert not head.keep_alive
    assert head.expects_continue


NOT_PLAIN = {
    "HTTP/1.0": head_bytes(start="GET /api/x HTTP/1.0"),
    "chunked": head_bytes("Transfer-Encoding: chunked"),
    "any transfer coding": head_bytes("Transfer-Encoding: gzip"),
    "two lengths": head_bytes("Content-Length: 1", "Content-Length: 1"),
    "a signed length": head_bytes("Content-Length: +1"),
    "an upgrade": head_bytes("Connection: upgrade", "Upgrade: websocket"),
    "CONNECT": head_bytes(start="CONNECT zoom.us:443 HTTP/1.1"),
    "a target over the line limit": head_bytes(start=f"GET /api/{'x' * 100} HTTP/1.1"),
    "a header over the field limit": head_bytes(f"X-Big: {'y' * 200}"),
    "too many headers": head_bytes(*(f"X-{n}: v" for n in range(101))),
    "a folded line": head_bytes("X-A: one", " two"),
    "a space before the colon": head_bytes("Host : h", host=False),
    "no Host": head_bytes(host=False),
    "two Hosts": head_bytes("Host: other"),
    "two User-Agents": head_bytes("User-Agent: a", "User-Agent: b"),
    "two Content-Types": head_bytes("Content-Type: a/b", "Content-Type: c/d"),
    "a bare line feed": b"GET /api/x HTTP/1.1\nHost: h\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\r\n\r\n",
    "a second message inside": b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("raw", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_but_a_plain_head_is_left_to_aiohttp(raw: bytes) -> None:
    assert parse_head(raw, LIMITS) is None


async def test_a_streamed_body_takes_its_length_and_leaves_the_rest() -> None:
    taken: list[int] = []
    stream = BodyStream(10, on_taken=lambda: taken.append(1))
    assert stream.feed(b"abcd") == b""
    assert stream.feed(b"efghijGET /next") == b"GET /next"
    assert stream.unread == 0
    assert await stream.readany() == b"abcd"
    assert await stream.readany() == b"efghij"
    assert taken == [1, 1]
    assert await stream.readany() == b""


async def test_a_streamed_body_waits_for_its_next_piece() -> None:
    stream = BodyStream(6, on_taken=lambda: None)
    reading = asyncio.ensure_future(stream.readany())
    await asyncio.sleep(0)  # let the reader reach its wait; nothing has arrived yet
    assert not reading.done()
    stream.feed(b"abc")
    assert await reading == b"abc"


async def test_a_streamed_body_whose_client_left_fails_its_reader() -> None:
    stream = BodyStream(6, on_taken=lambda: None)
    stream.feed(b"abc")
    stream.fail(ConnectionResetError("gone"))
    assert await stream.readany() == b"abc"
    with pytest.raises(ConnectionResetError):
        await stream.readany()


class Sink:
    """A transport as BodyStream uses one: what was written, and whether it closed."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        if self.closing:  # as uvloop's transports do
            raise RuntimeError("unable to perform operation on a closed transport")
        self.written += data


def streaming_to(sink: Sink, length: int) -> BodyStream:
    stream = BodyStream(length, on_taken=lambda: None)
    stream.stream_to(sink, limit=1 << 16)  # type: ignore[arg-type]
    return stream


async def test_a_streamed_body_goes_straight_to_the_sink_behind_what_waits() -> None:
    sink = Sink()
    stream = BodyStream(9, on_taken=lambda: None)
    stream.feed(b"abc")  # before the sink: waits to be read
    stream.stream_to(sink, limit=1 << 16)  # type: ignore[arg-type]
    stream.feed(b"def")  # must not overtake "abc"
    assert sink.written == b""
    assert await stream.readany() == b"abc"
    assert await stream.readany() == b"def"
    stream.feed(b"ghi")  # nothing waits now: straight through
    assert sink.written == b"ghi"
    assert await stream.readany() == b""


async def test_a_streamed_body_whose_sink_closed_is_read_and_dropped() -> None:
    sink = Sink()
    stream = streaming_to(sink, 6)
    stream.feed(b"abc")
    sink.closing = True  # Zoom answered early and closed
    assert stream.feed(b"defGET /") == b"GET /"
    assert stream.unread == 0
    assert sink.written == b"abc"
    assert await stream.readany() == b""
