"""Serving an app: the proxy's server (:mod:`proxy.http.server`) on its listening
sockets (:mod:`proxy.http.listen`), with the front (:mod:`proxy.http.front`) reading
each connection first, until a signal.

The wiring, above every layer: the front's lane comes from :mod:`proxy.forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from proxy.config import ListenSettings, UpstreamSettings
from proxy.forward.lane import api_lane
from proxy.http.answers import connection_refusal
from proxy.http.front import Front, Job, Reply
from proxy.http.heads import MAX_HEAD_SIZE, Head, Limits
from proxy.http.limits import HeadBudget
from proxy.http.listen import EagerSite
from proxy.http.server import (
    BACKLOG,
    CONNECTION_OPTIONS,
    MAX_FIELD_SIZE,
    MAX_LINE_SIZE,
    ConnectionRules,
    ProxyRunner,
)
from proxy.observe.lifecycle import LIFECYCLE
from proxy.observe.logs import AccessLogger
from proxy.web.keys import SETTINGS

__all__ = ["SERVER_OPTIONS", "serve_until_signalled", "start"]


#: aiohttp's server as the proxy runs it: its connections' options, and the access log
#: (``proxy.observe``, above ``proxy.http``).
SERVER_OPTIONS: dict[str, Any] = {**CONNECTION_OPTIONS, "access_log_class": AccessLogger}


async def start(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
    answer_half_closed: bool = True,
    lane: bool = True,
) -> ProxyRunner:
    """Start ``app`` on ``host:port``; the caller awaits ``runner.cleanup()``.

    ``lane`` false: the front takes no request itself, and aiohttp's server answers
    every one (the tests run the ``/api`` behaviour on both transports this way)."""
    settings = app.get(SETTINGS)  # the emulator has none
    rules = ConnectionRules(
        head_timeout=(settings.listen if settings else ListenSettings()).head_timeout,
        max_head_size=MAX_HEAD_SIZE,
        budget=HeadBudget(),
        answer_half_closed=answer_half_closed,
    )
    runner = ProxyRunner(app, rules=rules, shutdown_timeout=shutdown_timeout, **SERVER_OPTIONS)
    await runner.setup()
    try:
        site = EagerSite(
            runner,
            host,
            port,
            reuse_port=reuse_port,
            backlog=BACKLOG,
            front=_front(app, runner, rules, shutdown_timeout, lane=lane),
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class _DeclinesAll:
    """The lane of an app whose requests aiohttp answers, every one (not the proxy):
    the front still judges each connection's first head."""

    def take(self, head: Head, reply: Reply) -> Job | None:
        return None


def _front(
    app: web.Application,
    runner: web.AppRunner,
    rules: ConnectionRules,
    shutdown_timeout: float,
    *,
    lane: bool,
) -> Front:
    """The first reader of each connection, answering plain ``/api/*`` requests itself
    (the app must be started: the lane reads its sessions)."""
    api = api_lane(app) if lane else None
    settings = app.get(SETTINGS)  # the emulator has none
    limits = Limits(
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
        max_whole_body=0 if api is None else api.max_whole_body,
        body_stall=(settings.upstream if settings else UpstreamSettings()).timeout,
        head_timeout=rules.head_timeout,
        max_head_size=rules.max_head_size,
    )
    # runner.server is None once the runner shuts down.
    return Front(
        _DeclinesAll() if api is None else api,
        lambda: runner.server() if runner.server else None,
        limits,
        refusal=connection_refusal,
        shutdown_timeout=shutdown_timeout,
        head_budget=rules.budget,
    )


async def serve_until_signalled(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    announce: Callable[[], None],
    reuse_port: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM; then drain for at most ``shutdown_timeout``.

    While draining, requests are still served but ``/readyz`` answers 503.
    """
    runner = await start(
        app, host=host, port=port, shutdown_timeout=shutdown_timeout, reuse_port=reuse_port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # What start-up built (modules, the app, its clients) lives as long as the process:
    # frozen, a full collection no longer walks it, which shortens the pauses that
    # make up the tail latency under load.
    gc.collect()
    gc.freeze()
    announce()
    try:
        await stop.wait()
        lifecycle = app.get(LIFECYCLE)
        if lifecycle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(shutdown_timeout):
                    await lifecycle.drain()
    finally:
        await runner.cleanup()
