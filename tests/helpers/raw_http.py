"""HTTP/1.1 over a raw socket, with no client in between to normalise anything: write
exactly these bytes, then read the answers exactly as the proxy sent them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httptools

from tests.helpers.proxies import Proxy

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class _Answers:
    """httptools callbacks collecting whole answers."""

    def __init__(self) -> None:
        self.done: list[Answer] = []
        self.current = Answer()
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.current = Answer()


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[Answer]:
    """The next ``count`` answers on a connection (none to a HEAD request)."""
    answers = _Answers()
    while len(answers.done) < count:
        data = await asyncio.wait_for(reader.read(65536), timeout=10)
        assert data, f"the connection closed after {len(answers.done)} of {count} answers"
        answers.parser.feed_data(data)
    assert len(answers.done) == count, "more answers than requests"
    return answers.done


def connection(proxy: Proxy) -> AbstractAsyncContextManager[Connection]:
    """A connection to ``proxy``, closed on the way out."""
    return connection_to(proxy.url)


@asynccontextmanager
async def connection_to(url: str) -> AsyncIterator[Connection]:
    """A connection to the ``http://host:port`` of ``url``, closed on the way out."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


def request(
    method: str, path: str, cookie: str, *headers: str, body: bytes = b"", version: str = "1.1"
) -> bytes:
    """A request's bytes, with a Host, this Cookie, ``headers`` and a Content-Length for
    ``body``, if any."""
    lines = [f"{method} {path} HTTP/{version}", "Host: zoom-proxy", f"Cookie: {cookie}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def raw_request(url: str, request_bytes: bytes) -> bytes:
    """Send bytes exactly as given (no client normalisation) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request_bytes)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer
