"""The upstream client over TLS, as it reaches https://api.zoom.us: a real TLS server
on loopback with a certificate made for the test."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import UpstreamUnreachable
from proxy.http.client import Pool
from tests.helpers.tls import certificate_for

GUARD = 5.0


async def answer_every_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            host = next(line for line in head.split(b"\r\n") if line.startswith(b"Host: "))
            body = b'{"host": "%s"}' % host[6:]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server on 127.0.0.1 whose certificate names ``localhost``."""
    cert, key = certificate_for("localhost", tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(answer_every_request, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1], cert
    server.close()


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def pool_for(origin: str, ssl_context: ssl.SSLContext | None) -> Pool:
    return Pool(
        origin,
        limit=4,
        connect_timeout=GUARD,
        read_timeout=GUARD,
        buffer_limit=1 << 16,
        ssl_context=ssl_context,
    )


async def test_requests_go_over_verified_tls_and_reuse_the_connection(
    tls_server: tuple[int, Path],
) -> None:
    port, cert = tls_server
    pool = pool_for(f"https://localhost:{port}", trusting(cert))
    try:
        for _ in range(2):
            response = await asyncio.wait_for(pool.request("GET", "/v2/users/me", [], None), GUARD)
            assert await asyncio.wait_for(response.read(), GUARD) == (
                b'{"host": "localhost:%d"}' % port
            )
            response.release()
        assert (pool.in_use, pool.idle) == (0, 1)
    finally:
        pool.close()


async def test_a_certificate_for_another_name_is_refused(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    # The certificate names localhost, not 127.0.0.1.
    pool = pool_for(f"https://127.0.0.1:{port}", trusting(cert))
    try:
        with pytest.raises(UpstreamUnreachable):
            await asyncio.wait_for(pool.request("GET", "/v2/users/me", [], None), GUARD)
        assert (pool.in_use, pool.idle) == (0, 0)
    finally:
        pool.close()


async def test_an_untrusted_certificate_is_refused(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    pool = pool_for(f"https://127.0.0.1:{port}", None)  # the system's trust store
    try:
        with pytest.raises(UpstreamUnreachable):
            await asyncio.wait_for(pool.request("GET", "/v2/users/me", [], None), GUARD)
    finally:
        pool.close()
