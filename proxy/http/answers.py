"""Whole HTTP/1.1 answers as bytes, for what is written without aiohttp's server: the
front's answers and refusals."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from http import HTTPStatus

from proxy.errors import ErrorAnswer, ProxyError, error_answer
from proxy.http.seams import http_date

#: The ``Server`` header of the proxy's own answers: no product versions for a scanner
#: to match against known flaws (aiohttp's default names Python's and its own).
SERVER = "zoom-proxy"

log = logging.getLogger(__name__)


@functools.cache
def status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}\r\n"


def head_bytes(lines: Iterable[str]) -> bytes:
    """Header lines (CRLF-terminated) as bytes; values keep any byte Zoom sent."""
    return "".join(lines).encode("utf-8", "surrogateescape")


def error_bytes(
    answer: ErrorAnswer, extra: Iterable[tuple[str, str]] = (), *, close: bool
) -> bytes:
    """``answer`` as a whole response, with ``extra`` headers."""
    lines = [status_line(answer.status)]
    lines += [f"{name}: {value}\r\n" for name, value in answer.headers]
    lines += [f"{name}: {value}\r\n" for name, value in extra]
    lines.append(f"Date: {http_date()}\r\nServer: {SERVER}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append(f"Content-Length: {len(answer.body)}\r\n\r\n")
    return head_bytes(lines) + answer.body


def connection_refusal(error: ProxyError, peer: str | None) -> bytes:
    """The answer to a request refused before it was read whole, which ends its
    connection (no request id, no session: nothing of the request is trusted)."""
    log_connection_refusal(peer, error)
    return error_bytes(error_answer(error, ""), close=True)


def log_connection_refusal(peer: str | None, error: ProxyError) -> None:
    log.warning("refused a request from %s: %d %s", peer, error.status, error.code)
