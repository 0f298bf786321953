"""Running an app on a socket with the proxy's server options."""

from __future__ import annotations

from aiohttp import web

from .logs import AccessLogger

#: Cookie headers of at least 16 KiB must be accepted (chunked sessions); aiohttp's
#: default of 8190 bytes would refuse them with a page that echoes the cookie.
MAX_FIELD_SIZE = 32 * 1024
MAX_LINE_SIZE = 16 * 1024

SERVER_OPTIONS: dict[str, object] = {
    "max_field_size": MAX_FIELD_SIZE,
    "max_line_size": MAX_LINE_SIZE,
    # A client that disconnects cancels its handler, which closes its upstream request.
    "handler_cancellation": True,
    "access_log_class": AccessLogger,
}


async def start(
    app: web.Application, *, host: str, port: int, shutdown_timeout: float = 10.0
) -> web.AppRunner:
    """Start ``app`` on ``host:port``; the caller awaits ``runner.cleanup()``."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **SERVER_OPTIONS)  # type: ignore[arg-type]
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
