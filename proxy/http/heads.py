"""Request heads as the connection's first reader (:mod:`proxy.http.front`) takes them:
plain HTTP/1.1 that aiohttp's own parser would accept, framed by ``Content-Length``.
Anything else is left to aiohttp, which judges it, except what no transport may take
(:func:`framing_refusal`): that is refused on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import httptools

from proxy.errors import NotHttp, ProxyError, UpgradeRefused
from proxy.http.seams import SINGLETON_HEADERS

#: A ``Content-Length`` of more digits is refused: no body is near 10**18 bytes, and
#: Python's ``int()`` refuses strings over 4,300 digits.
MAX_LENGTH_DIGITS = 18
#: The largest request head taken, all lines together (nginx takes 32 KiB by default).
MAX_HEAD_SIZE = 64 * 1024
#: Requests with more headers than this go to aiohttp (which allows 128).
_MAX_HEADERS = 100


class Head(NamedTuple):
    """A parsed request head, as the client sent it. (A named tuple: made once per
    request on the hot path, it costs a quarter of a frozen dataclass.)"""

    method: str
    #: The request target, undecoded (``/api/meetings/%252F...?a=b``).
    target: str
    #: Names as spelled by the client, in order, repeats kept.
    headers: list[tuple[str, str]]
    #: The first value of each header, by lower-case name.
    first: dict[str, str]
    #: Lower-case names sent more than once.
    repeated: frozenset[str]
    keep_alive: bool
    content_length: int

    @property
    def expects_continue(self) -> bool:
        return self.first.get("expect", "").lower() == "100-continue"


@dataclass(frozen=True, slots=True)
class Limits:
    """aiohttp's parser limits (the lane must be no more lenient than them), the largest
    body read whole before its job starts, how long a client may stay silent
    mid-body before it is given up on (:class:`ClientTooSlow`), and how long and large a
    request head may grow before it is refused (:class:`HeadTooSlow`, 431)."""

    max_line_size: int
    max_field_size: int
    max_whole_body: int
    body_stall: float
    head_timeout: float = 20.0
    max_head_size: int = MAX_HEAD_SIZE


def framing_refusal(method: str, upgrade: bool, content_length: str | None) -> ProxyError | None:
    """Why no transport may take a request, if so; its connection then ends after the
    refusal, before any later byte is read.

    * Switching protocols (``Upgrade``, ``CONNECT``): Zoom's REST API has no upgrade,
      and aiohttp 3.14's parser stops framing after a declined non-websocket upgrade,
      so a request could hide in the bytes that follow.
    * A ``Content-Length`` over :data:`MAX_LENGTH_DIGITS` digits.
    """
    if upgrade or method == "CONNECT":
        return UpgradeRefused()
    # Whitespace around a field's value is not part of it (RFC 9110, 5.5).
    if content_length is not None and len(content_length.strip(" \t")) > MAX_LENGTH_DIGITS:
        return NotHttp(f"The Content-Length is over {MAX_LENGTH_DIGITS} digits.")
    return None


class _HeadParser:
    """httptools callbacks collecting one head (its bytes are fed whole)."""

    __slots__ = (
        "complete",
        "extra",
        "headers",
        "keep_alive",
        "method",
        "parser",
        "target",
        "upgrade",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        #: Set at the end of the head, while the parser still describes this message.
        self.complete = False
        self.method = b""
        self.keep_alive = False
        #: llhttp's verdict: a protocol switch (``Connection: upgrade``, or CONNECT).
        self.upgrade = False
        #: Bytes past the end of the head (a body, a second message): not a plain head.
        self.extra = False

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.upgrade = parser.should_upgrade()
        # HTTP/1.1 only: 1.0's keep-alive rules and 2.0 are aiohttp's to handle.
        self.complete = parser.get_http_version() == "1.1"
        self.method = parser.get_method()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.extra = True


def parse_head(raw: bytes, limits: Limits) -> Head | ProxyError | None:
    """``raw`` (through the blank line) as a :class:`Head`; the error to refuse it with
    (:func:`framing_refusal`); or ``None`` if it is anything else but a plain HTTP/1.1
    head that aiohttp would accept, its body (if any) framed by ``Content-Length``."""
    collected = _HeadParser()
    try:
        collected.parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass  # llhttp stops at the end of a protocol switch's head: refused below
    except httptools.HttpParserError:
        return None
    if not collected.method:  # the head did not end (fed whole, it cannot)
        return None
    headers: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    repeated: set[str] = set()
    for raw_name, raw_value in collected.headers:
        if len(raw_name) + len(raw_value) > limits.max_field_size:
            return None  # aiohttp answers 431
        name = raw_name.decode("latin-1")
        value = raw_value.decode("utf-8", "surrogateescape")
        headers.append((name, value))
        lower = _lower(name)
        if lower in first:
            repeated.add(lower)
        else:
            first[lower] = value
    method = collected.method.decode("ascii")
    length = first.get("content-length")
    refusal = framing_refusal(method, collected.upgrade or "upgrade" in first, length)
    if refusal is not None:
        return refusal
    if (
        not collected.complete
        or collected.extra
        or len(collected.target) > limits.max_line_size
        or len(collected.headers) > _MAX_HEADERS
        or "transfer-encoding" in first
        or "host" not in first
        # Headers aiohttp's parser refuses to see twice: such a request is its to refuse.
        or repeated & SINGLETON_HEADERS
    ):
        return None
    length = length or "0"
    if not (length.isascii() and length.isdigit()):
        return None
    return Head(
        method,
        collected.target.decode("utf-8", "surrogateescape"),
        headers,
        first,
        frozenset(repeated),
        collected.keep_alive,
        int(length),
    )


class _LowerNames(dict[str, str]):
    def __missing__(self, name: str) -> str:
        lower = name.lower()
        if len(self) < 1024:
            self[name] = lower
        return lower


_lower = _LowerNames().__getitem__
