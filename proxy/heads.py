"""Request heads as the connection's first reader (:mod:`proxy.front`) takes them:
plain HTTP/1.1 that aiohttp's own parser would accept, framed by ``Content-Length``.
Anything else is left to aiohttp, which judges it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

#: Requests with more headers than this go to aiohttp (which allows 128).
_MAX_HEADERS = 100
#: Headers aiohttp's parser refuses to see twice (``SINGLETON_HEADERS``): such a request
#: is aiohttp's to refuse. So is one without ``Host``.
_SINGLETONS = frozenset(
    {
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "host",
        "max-forwards",
        "server",
        "transfer-encoding",
        "user-agent",
    }
)


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request head, as the client sent it."""

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
    body read whole before its job starts, and how long a client may stay silent
    mid-body before it is given up on (:class:`ClientTooSlow`)."""

    max_line_size: int
    max_field_size: int
    max_whole_body: int
    body_stall: float


class _HeadParser:
    """httptools callbacks collecting one head (its bytes are fed whole)."""

    __slots__ = ("complete", "extra", "headers", "keep_alive", "method", "parser", "target")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        #: Set at the end of the head, while the parser still describes this message.
        self.complete = False
        self.method = b""
        self.keep_alive = False
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
        # HTTP/1.1 only: 1.0's keep-alive rules and 2.0 are aiohttp's to handle.
        self.complete = parser.get_http_version() == "1.1" and not parser.should_upgrade()
        self.method = parser.get_method()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.extra = True


def parse_head(raw: bytes, limits: Limits) -> Head | None:
    """``raw`` (through the blank line) as a :class:`Head`, or ``None`` if it is anything
    but a plain HTTP/1.1 head that aiohttp would accept, its body (if any) framed by
    ``Content-Length``."""
    collected = _HeadParser()
    try:
        collected.parser.feed_data(raw)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    if (
        not collected.complete
        or collected.extra
        or len(collected.target) > limits.max_line_size
        or len(collected.headers) > _MAX_HEADERS
    ):
        return None
    headers: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    repeated: set[str] = set()
    for raw_name, raw_value in collected.headers:
        if len(raw_name) + len(raw_value) > limits.max_field_size:
            return None
        name = raw_name.decode("latin-1")
        value = raw_value.decode("utf-8", "surrogateescape")
        headers.append((name, value))
        lower = _lower(name)
        if lower in first:
            repeated.add(lower)
        else:
            first[lower] = value
    if "transfer-encoding" in first or "host" not in first or repeated & _SINGLETONS:
        return None
    length = first.get("content-length", "0")
    if not (length.isascii() and length.isdigit()):
        return None
    return Head(
        method=collected.method.decode("ascii"),
        target=collected.target.decode("utf-8", "surrogateescape"),
        headers=headers,
        first=first,
        repeated=frozenset(repeated),
        keep_alive=collected.keep_alive,
        content_length=int(length),
    )


class _LowerNames(dict[str, str]):
    def __missing__(self, name: str) -> str:
        lower = name.lower()
        if len(self) < 1024:
            self[name] = lower
        return lower


_lower = _LowerNames().__getitem__
