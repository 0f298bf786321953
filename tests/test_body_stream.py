"""A streamed request body: its length, its order, its reader, its sink."""

from __future__ import annotations

import asyncio

import pytest

from proxy.http.body import BodyStream


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
