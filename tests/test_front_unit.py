"""The front's parsing, unit by unit: the head parser, and the connection's first reader
fed bytes in pieces through a recording transport; by example, and fuzzed.

Whatever arrives, the front must do one of three things, and never raise: refuse the
request (a whole HTTP answer, then close), hand the connection to aiohttp with every
byte it has read, or wait for more (holding no more than a head's limit).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.errors import NotHttp, ProxyError, error_answer
from proxy.http.answers import error_bytes
from proxy.http.front import FrontProtocol, Job, Reply
from proxy.http.heads import MAX_LENGTH_DIGITS, Head, Limits, parse_head
from proxy.http.limits import HeadBudget

LIMITS = Limits(
    max_line_size=200,
    max_field_size=8000,
    max_whole_body=1000,
    body_stall=5.0,
    head_timeout=5.0,
    max_head_size=9000,
)

#: Header-value characters: digits (ASCII and not), signs, spaces, letters, a tab.
_VALUE_CHARS = st.sampled_from("0123456789+-. \tx,٣")


@given(
    st.text(_VALUE_CHARS, max_size=40)
    | st.integers(0, 10**25).map(str)
    | st.integers(0, 6000).map(lambda zeros: "0" * zeros + "5")
)
def test_any_content_length_is_taken_exactly_refused_or_left_to_aiohttp(value: str) -> None:
    raw = f"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\n"
    result = parse_head(raw.encode(), LIMITS)
    digits = value.strip(" \t")  # whitespace around a field value is not part of it
    if isinstance(result, Head):
        assert digits.isascii()
        assert digits.isdigit()
        assert len(digits) <= MAX_LENGTH_DIGITS
        assert result.content_length == int(digits)
    elif isinstance(result, ProxyError):
        assert isinstance(result, NotHttp)
        assert len(digits) > MAX_LENGTH_DIGITS


@given(st.binary(max_size=300))
def test_any_bytes_before_the_blank_line_never_raise(prefix: bytes) -> None:
    result = parse_head(prefix + b"\r\n\r\n", LIMITS)
    assert result is None or isinstance(result, Head | ProxyError)


class _Transport:
    """Records what the front writes, and whether it closed or handed over."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0


class _Aiohttp(asyncio.Protocol):
    """Stands in for aiohttp's protocol: what it receives after a hand-over."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


class _DecliningLane:
    """A lane that takes no request: the front refuses each head or hands the connection
    to aiohttp. A stand-in for ``proxy.serve``'s private one, for apps without a lane."""

    def take(self, head: Head, reply: Reply) -> Job | None:
        return None


def _refusal(error: ProxyError, peer: str | None) -> bytes:
    return error_bytes(error_answer(error, ""), close=True)


def _feed(pieces: list[bytes]) -> tuple[_Transport, _Aiohttp, HeadBudget]:
    async def run() -> tuple[_Transport, _Aiohttp, HeadBudget]:
        aiohttp = _Aiohttp()
        budget = HeadBudget(10_000)
        front = FrontProtocol(_DecliningLane(), lambda: aiohttp, LIMITS, set(), _refusal, budget)
        transport = _Transport()
        front.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            if transport.closed or transport.protocol is not None:
                break
            front.data_received(piece)
        if not transport.closed and transport.protocol is None:
            front.connection_lost(None)
        return transport, aiohttp, budget

    return asyncio.run(run())


_PIECES = st.lists(
    st.binary(max_size=120)
    | st.sampled_from(
        [b"GET /api/x HTTP/1.1\r\n", b"Host: h\r\n", b"\r\n", b"\n", b"Upgrade: h2c\r\n"]
    ),
    max_size=30,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(_PIECES)
def test_the_front_refuses_hands_over_or_waits_whatever_arrives(pieces: list[bytes]) -> None:
    transport, aiohttp, budget = _feed(pieces)
    sent = b"".join(pieces)
    if transport.closed and transport.written:  # refused: one whole answer
        answers = _answers(bytes(transport.written))
        assert len(answers) == 1
        assert 400 <= answers[0] < 600
    elif transport.protocol is not None:  # handed over, from the request's first byte
        assert sent.startswith(bytes(aiohttp.received))
        assert not transport.written
    else:  # waiting for the rest of a head, within its limit
        assert not transport.written
        assert b"\r\n\r\n" not in sent
        assert len(sent) <= LIMITS.max_head_size
    assert budget.held == 0


def _answers(data: bytes) -> list[int]:
    statuses: list[int] = []

    class Collect:
        def on_headers_complete(self) -> None:
            statuses.append(parser.get_status_code())

    parser = httptools.HttpResponseParser(Collect())
    parser.feed_data(data)
    return statuses


def _refused_with(pieces: list[bytes]) -> int:
    transport, _, _ = _feed(pieces)
    assert transport.closed
    [status] = _answers(bytes(transport.written))
    return status


def test_a_request_line_within_its_limit_is_not_refused_while_it_arrives() -> None:
    line = b"GET /" + b"a" * (LIMITS.max_line_size - 1) + b" HTTP/1.1\r\n"
    transport, _, _ = _feed([line[:100], line[100:]])
    assert not transport.closed


def test_a_request_line_over_its_limit_is_414_while_it_arrives() -> None:
    line = b"GET /" + b"a" * (LIMITS.max_line_size + 20)  # over, with any method and version
    assert _refused_with([line[:100], line[100:]]) == 414


def test_a_header_line_over_its_limit_is_431_while_it_arrives() -> None:
    head = b"GET / HTTP/1.1\r\nX-Big: " + b"b" * (2 * LIMITS.max_field_size)
    assert _refused_with([head[:50], head[50:]]) == 431


def test_a_head_over_its_limit_is_431_while_it_arrives() -> None:
    lines = [b"GET / HTTP/1.1\r\n"] + [b"X-Pad: %b\r\n" % (b"p" * 1000)] * 10
    assert _refused_with(lines) == 431


def test_a_line_end_split_between_pieces_is_seen() -> None:
    transport, aiohttp, _ = _feed([b"GET / HTTP/1.1\r", b"\nHost: h\r", b"\n\r", b"\n"])
    assert transport.protocol is not None  # whole: handed to aiohttp
    assert bytes(aiohttp.received) == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def test_a_bare_line_feed_is_handed_over_at_once() -> None:
    transport, aiohttp, _ = _feed([b"GET / HTTP/1.1\nHost: h\n"])
    assert transport.protocol is not None
    assert bytes(aiohttp.received) == b"GET / HTTP/1.1\nHost: h\n"


def test_an_upgrade_is_refused_by_the_front_itself() -> None:
    transport, _, _ = _feed([b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\nGET /b"])
    assert transport.closed
    assert _answers(bytes(transport.written)) == [400]
    assert transport.protocol is None
