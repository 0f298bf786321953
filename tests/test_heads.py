"""What the connection's first reader takes as a plain head; the rest is aiohttp's."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.errors import NotHttp, UpgradeRefused
from proxy.http.heads import Head, Limits, parse_head

LIMITS = Limits(max_line_size=100, max_field_size=200, max_whole_body=1000, body_stall=1.0)


def head_bytes(*lines: str, start: str = "GET /api/x?a=%252F HTTP/1.1", host: bool = True) -> bytes:
    """A head with ``lines``, after a ``Host`` unless ``host`` is false."""
    return ("\r\n".join([start, *(["Host: h"] if host else []), *lines]) + "\r\n\r\n").encode()


def test_a_plain_head_is_read_as_sent() -> None:
    head = parse_head(head_bytes("X-Trace: one", "x-trace: two", "Content-Length: 12"), LIMITS)
    assert isinstance(head, Head)
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
    assert isinstance(head, Head)
    assert not head.keep_alive
    assert head.expects_continue


NOT_PLAIN = {
    "HTTP/1.0": head_bytes(start="GET /api/x HTTP/1.0"),
    "chunked": head_bytes("Transfer-Encoding: chunked"),
    "any transfer coding": head_bytes("Transfer-Encoding: gzip"),
    "two lengths": head_bytes("Content-Length: 1", "Content-Length: 1"),
    "a signed length": head_bytes("Content-Length: +1"),
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


SWITCHES = {
    "an upgrade": head_bytes("Connection: upgrade", "Upgrade: websocket"),
    "an upgrade header alone": head_bytes("Upgrade: h2c"),
    "an upgrade over HTTP/1.0": head_bytes("Upgrade: h2c", start="GET /api/x HTTP/1.0"),
    "CONNECT": head_bytes(start="CONNECT zoom.us:443 HTTP/1.1"),
}


@pytest.mark.parametrize("raw", SWITCHES.values(), ids=SWITCHES.keys())
def test_a_protocol_switch_is_refused(raw: bytes) -> None:
    assert isinstance(parse_head(raw, LIMITS), UpgradeRefused)


@pytest.mark.parametrize("digits", [19, 4301, 5001])
def test_a_content_length_of_too_many_digits_is_refused(digits: int) -> None:
    limits = dataclasses.replace(LIMITS, max_field_size=8000)
    refusal = parse_head(head_bytes(f"Content-Length: {'0' * (digits - 1)}5"), limits)
    assert isinstance(refusal, NotHttp)
    assert refusal.status == 400


def test_a_content_length_of_18_digits_is_taken() -> None:
    head = parse_head(head_bytes(f"Content-Length: {'0' * 17}5"), LIMITS)
    assert isinstance(head, Head)
    assert head.content_length == 5
