"""Accepting connections while the loop is saturated (proxy/http/listen.py).

The server runs on uvloop, as ``python -m proxy`` does, in a thread of its own, and a
callback keeps every loop iteration busy for a while, the way a saturated proxy's
iterations are. What is counted is loop iterations, not seconds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import uvloop
from aiohttp import web

from proxy import serve
from proxy.http.listen import ACCEPT_PAUSE

#: Clients that connect at once while the server is busy.
CLIENTS = 40
#: How long each loop iteration of the server is kept busy.
ITERATION = 0.02
TIMEOUT = 10.0


class BusyServer:
    """A server on uvloop whose every loop iteration takes ``ITERATION`` seconds."""

    def __init__(self) -> None:
        self.port = 0
        self.iterations = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=uvloop.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_get("/ping", self._ping)
        runner = await serve.start(app, host="127.0.0.1", port=0)
        self.port = runner.addresses[0][1]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._loop.call_soon(self._busy)
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    def _busy(self) -> None:
        time.sleep(ITERATION)  # stands for a saturated server's work, not for waiting
        self.iterations += 1
        assert self._loop is not None
        assert self._stop is not None
        if not self._stop.is_set():
            self._loop.call_soon(self._busy)

    def __enter__(self) -> BusyServer:
        self._thread.start()
        assert self._ready.wait(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)


@pytest.fixture
def busy_server() -> Iterator[BusyServer]:
    with BusyServer() as server:
        yield server


def test_a_saturated_server_accepts_every_waiting_client_at_once(busy_server: BusyServer) -> None:
    clients = [socket.create_connection(("127.0.0.1", busy_server.port)) for _ in range(CLIENTS)]
    try:
        started = busy_server.iterations
        for client in clients:
            client.settimeout(TIMEOUT)
            client.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [_read_all(client) for client in clients]
        iterations = busy_server.iterations - started
    finally:
        for client in clients:
            client.close()
    assert all(
        answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"pong") for answer in answers
    )
    # Accepting one connection per iteration (uvloop's own server) would take >= 40.
    assert iterations < CLIENTS // 4


def _read_all(client: socket.socket) -> bytes:
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


SERVER_WITH_FEW_FILES = """
import asyncio, resource, sys
import uvloop
from aiohttp import web
from proxy import serve

async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    app = web.Application()
    app.router.add_get("/ping", lambda request: web.Response(text="pong"))
    runner = await serve.start(app, host="127.0.0.1", port=0)
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

uvloop.run(main())
"""


def test_out_of_file_descriptors_the_server_pauses_then_serves_again() -> None:
    with subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", SERVER_WITH_FEW_FILES],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stderr is not None
            port = int(server.stdout.readline())
            flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            assert "cannot accept connections" in server.stderr.readline()
            # While it cannot accept, it must not spin: at most one line per pause.
            time.sleep(2.5 * ACCEPT_PAUSE)  # the window observed, not a wait for anything
            for client in flood:
                client.close()
            os.set_blocking(server.stderr.fileno(), False)
            assert (server.stderr.read() or "").count("cannot accept connections") <= 3
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
                client.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert _read_all(client).endswith(b"pong")
        finally:
            server.kill()
