"""The listening sockets: every waiting connection is accepted as soon as the socket
is readable, however busy the loop.

uvloop's server (libuv's ``uv__server_io``) accepts one connection each time the
listening socket is reported readable, that is once per loop iteration. A saturated
proxy iterates every few tens of milliseconds, so a burst of new clients was accepted
at about 20 a second: in ``bench/``, 1,000 connections left a few dozen waiting in the
kernel's queue for over 2 s while the others were served. :class:`EagerSite` accepts
everything pending (up to the backlog) per readiness event, as asyncio's own server
does, and hands each socket to aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from yarl import URL

from proxy.http.front import Front
from proxy.http.seams import set_site_server

log = logging.getLogger(__name__)

#: Seconds without accepting after running out of file descriptors (asyncio waits 1 s).
ACCEPT_PAUSE = 1.0
#: Accepting fails like this when a client gave up while queued: skip it, go on.
_CLIENT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO})


class _Listeners(asyncio.AbstractServer):
    """The sockets of an :class:`EagerSite`, shaped as the server aiohttp's runner expects."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket]) -> None:
        self._loop = loop
        self._sockets = sockets
        self._closed = asyncio.Event()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    async def start_serving(self) -> None:
        """Already serving: the site registers its readers when it starts."""

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class EagerSite(web.BaseSite):
    """``host:port`` over TCP, accepting every pending connection per readiness event."""

    __slots__ = (
        "_front",
        "_handshakes",
        "_host",
        "_listen_backlog",
        "_listeners",
        "_port",
        "_reuse_port",
        "_source",
    )

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        backlog: int,
        reuse_port: bool = False,
        front: Front | None = None,
    ) -> None:
        """``front``: the protocol that reads each new connection first, instead of
        aiohttp's (:mod:`proxy.http.front`)."""
        super().__init__(runner, backlog=backlog)
        #: Its own copies, not BaseSite's private ``_runner`` and ``_backlog``.
        self._source = runner
        self._listen_backlog = backlog
        self._listeners: _Listeners | None = None
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._front = front
        #: Accepted sockets being wrapped into transports (kept so they are not collected).
        self._handshakes: set[asyncio.Task[Any]] = set()

    @property
    def front(self) -> Front | None:
        return self._front

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        sockets = _bound_sockets(self._host, self._port, self._listen_backlog, self._reuse_port)
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept_pending, loop, sock)
        self._listeners = _Listeners(loop, sockets)
        set_site_server(self, self._listeners)

    async def stop(self) -> None:
        await super().stop()
        if self._front is not None:
            await self._front.shutdown()

    def _accept_pending(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        factory: Callable[[], asyncio.Protocol] | None = self._source.server
        if factory is None:  # the runner is shutting down
            return
        if self._front is not None:
            factory = self._front
        for _ in range(self._listen_backlog):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue
                # Out of file descriptors, say. The socket stays readable, so listening
                # on would spin: pause, as asyncio's own server does.
                log.error(
                    "cannot accept connections (%s); trying again in %g s",
                    exc.strerror or exc,
                    ACCEPT_PAUSE,
                )
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_PAUSE, self._listen_again, loop, listener)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(loop.connect_accepted_socket(factory, conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshake_done)

    def _listen_again(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        if self._listeners is not None and self._listeners.is_serving():
            loop.add_reader(listener.fileno(), self._accept_pending, loop, listener)

    def _handshake_done(self, task: asyncio.Task[Any]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("an accepted connection could not be set up: %s", exc)


def _bound_sockets(host: str, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """A listening socket per address ``host`` resolves to, as asyncio's server binds them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
