"""The middleware around every request: its id for the logs, the in-flight count that
shutdown drains, the request metrics, and the headers every answer carries (its
request id, CORS, and a ``Server`` that names no versions).

Each is a plain call before and after the handler rather than a middleware or a signal
of its own: every middleware is one more coroutine frame that each resumption of a
handler passes through, and an ``on_response_prepare`` receiver one more coroutine per
answer. A handler that streams prepares its response with :func:`prepare`.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from proxy.http.answers import SERVER
from proxy.observe.logs import RECORD, add_request_id_header
from proxy.observe.record import Requests
from proxy.web.cors import add_cors_headers


def _finish_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault(hdrs.SERVER, SERVER)  # Zoom's own, if it named one
    add_request_id_header(request, response)
    add_cors_headers(request, response)


async def prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Send a streamed response's headers, the common ones included."""
    _finish_headers(request, response)
    await response.prepare(request)


def bracket(requests: Requests) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        record = request[RECORD] = requests.begin(
            request.method, request.raw_path, request.headers.get("X-Request-ID")
        )
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                _finish_headers(request, response)
            return response
        finally:
            requests.end(record, status)

    return middleware
