"""An access log that cannot leak: method, path without query, status, duration.

aiohttp's default access log prints the request line, and Zoom's revoke endpoint takes
the token in the query. Run the emulator with this class::

    runner = web.AppRunner(emulator.app(), access_log_class=AccessLogger)
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    """Logs ``METHOD /path STATUS seconds``; the query string is never logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "emulator %s %s %s %.3fs", request.method, request.path, response.status, time
        )
