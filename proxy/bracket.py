"""The middleware around every request: its id for the logs, the in-flight count that
shutdown drains, and the request metrics.

Each is a plain call before and after the handler rather than a middleware of its own:
every middleware is one more coroutine frame that each resumption of a handler passes
through.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .lifecycle import Lifecycle
from .logs import begin_request, end_request
from .metrics import Metrics


def bracket(metrics: Metrics, lifecycle: Lifecycle) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = begin_request(request)
        lifecycle.enter()
        metrics.enter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            metrics.leave(request, status)
            lifecycle.leave()
            end_request(token)

    return middleware
