"""``/download?url=…`` (SPEC 13), end to end: the emulator's web origin checks the token
and redirects to a storage server on another port, which serves bytes with Range and
records what it saw."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from proxy import serve
from proxy.callers.registry import new_key
from proxy.emulator.api import download_chunks
from proxy.emulator.recordings import StorageServer
from proxy.errors import InsecureRedirect
from proxy.forward.download import follow
from proxy.forward.download_url import parse_origin
from proxy.http.pools import Pools
from proxy.web.keys import DOWNLOAD_HOSTS
from tests.helpers.metrics import scrape, value
from tests.helpers.proxies import Proxy, ProxyFactory, Zoom
from tests.helpers.raw_http import connection, read_answers, request
from tests.helpers.tls import certificate_for

pytestmark = pytest.mark.both_transports

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIZE = 3 << 20
KEY, KEY_SHA256 = new_key()


def pattern(size: int, start: int = 0) -> bytes:
    return b"".join(download_chunks(size, start))


@pytest.fixture
async def storage(zoom: Zoom) -> AsyncIterator[StorageServer]:
    server = StorageServer(zoom.emulator)
    runner = await serve.start(server.app(), host="127.0.0.1", port=0, lane=False)
    zoom.emulator.storage_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


def settings(zoom: Zoom, **service: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {"zoom": {"download_origins": [zoom.base_url]}}
    if service:
        emulator = zoom.emulator
        sections["service"] = {
            "account_id": emulator.account_id,
            "client_id": emulator.service_client_id,
            "client_secret": emulator.service_client_secret,
            "callers": [{"name": "archiver", "key_sha256": KEY_SHA256, **service}],
        }
    return sections


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, zoom: Zoom, storage: StorageServer) -> Proxy:
    proxy = await make_proxy(**settings(zoom))
    await proxy.sign_in()
    return proxy


def download_url(zoom: Zoom, recording: str) -> str:
    return f"{zoom.base_url}/rec/download/{recording}"


def through(proxy: Proxy, url: str) -> str:
    return f"{proxy.url}/download?url={quote(url, safe='')}"


@asynccontextmanager
async def web_host(
    path: str, handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """A stand-in for Zoom's web host on loopback, answering ``path``; its origin
    (``https://localhost:<port>`` with ``tls``, a context with a certificate for it)."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def tls_for_localhost(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for ``localhost`` made for the test, and the
    certificate's file (what a client must trust)."""
    cert, key = certificate_for("localhost", directory)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    return served, cert


async def downloading_from(make_proxy: ProxyFactory, origin: str) -> Proxy:
    """A signed-in proxy whose one download origin is ``origin``."""
    proxy = await make_proxy(zoom={"download_origins": [origin]})
    await proxy.sign_in()
    return proxy


async def test_a_recording_streams_whole_with_its_headers(
    proxy: Proxy, storage: StorageServer
) -> None:
    recording = proxy.zoom.emulator.add_recording(SIZE)
    async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Length"] == str(SIZE)
        assert response.headers["Content-Type"] == "video/mp4"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["ETag"] == f'"{recording}"'
        assert recording in response.headers["Content-Disposition"]
        assert "Set-Cookie" not in response.headers  # the storage host set one
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(SIZE)).digest()


async def test_the_storage_host_never_sees_a_token_or_a_cookie(
    proxy: Proxy, storage: StorageServer
) -> None:
    recording = proxy.zoom.emulator.add_recording(1000)
    async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as response:
        assert response.status == 200
    [seen] = storage.requests
    names = {name.lower() for name in seen}
    assert "authorization" not in names
    assert "cookie" not in names
    assert proxy.zoom.emulator.counters["recording_hits"] == 1  # the token went there


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        ({"Range": "bytes=100-199"}, 206, (100, 100)),
        ({"Range": "bytes=-50"}, 206, (SIZE - 50, 50)),
        ({"Range": f"bytes={SIZE}-"}, 416, None),
    ],
    ids=["middle", "suffix", "unsatisfiable"],
)
async def test_a_range_goes_to_every_hop_and_its_answer_comes_back(
    proxy: Proxy,
    storage: StorageServer,
    headers: dict[str, str],
    status: int,
    expected: tuple[int, int] | None,
) -> None:
    recording = proxy.zoom.emulator.add_recording(SIZE)
    url = through(proxy, download_url(proxy.zoom, recording))
    async with proxy.client.get(url, headers=headers) as response:
        body = await response.read()
        assert response.status == status
        assert "Content-Range" in response.headers
    if expected is not None:
        start, length = expected
        assert body == pattern(start + length)[start:]
    assert storage.requests[-1]["Range"] == headers["Range"]


async def test_a_matching_etag_is_304(proxy: Proxy, storage: StorageServer) -> None:
    recording = proxy.zoom.emulator.add_recording(1000)
    url = through(proxy, download_url(proxy.zoom, recording))
    async with proxy.client.get(url, headers={"If-None-Match": f'"{recording}"'}) as response:
        assert response.status == 304
        assert await response.read() == b""


async def test_head_gets_the_headers_and_no_body(proxy: Proxy, storage: StorageServer) -> None:
    recording = proxy.zoom.emulator.add_recording(SIZE)
    async with proxy.client.head(through(proxy, download_url(proxy.zoom, recording))) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(SIZE)
        assert await response.read() == b""


@pytest.mark.parametrize(
    "url",
    [
        "https://zoom.us.evil.test/rec/x",
        "http://127.0.0.1:1/rec/x",
        "/rec/download/x",
        "",
    ],
)
async def test_a_bad_download_url_is_400_and_nothing_is_fetched(
    proxy: Proxy, storage: StorageServer, url: str
) -> None:
    async with proxy.client.get(through(proxy, url)) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "bad_download_url"
    assert proxy.zoom.emulator.counters["recording_hits"] == 0
    assert storage.requests == []


async def test_a_path_outside_rec_on_zooms_origin_is_refused(
    proxy: Proxy, storage: StorageServer
) -> None:
    before = len(proxy.zoom.emulator.api_requests)  # signing in asked for /users/me
    url = f"{proxy.zoom.base_url}/rec/../v2/users/me"
    async with proxy.client.get(through(proxy, url)) as response:
        assert response.status == 400
    assert len(proxy.zoom.emulator.api_requests) == before


async def test_signed_out_a_script_gets_401_and_a_browser_goes_to_sign_in(
    make_proxy: ProxyFactory, zoom: Zoom, storage: StorageServer
) -> None:
    proxy = await make_proxy(**settings(zoom))
    url = through(proxy, download_url(zoom, zoom.emulator.add_recording(10)))
    async with proxy.client.get(url) as response:
        assert response.status == 401
    navigation = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
    async with proxy.client.get(url, headers=navigation, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"].startswith(f"{proxy.url}/auth/login?next=")
        assert quote("/download?url=", safe="") in response.headers["Location"]


async def test_an_expired_token_is_refreshed_and_the_download_retried(
    proxy: Proxy, storage: StorageServer
) -> None:
    emulator = proxy.zoom.emulator
    recording = emulator.add_recording(1000)
    emulator.expire_access_tokens()
    async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as response:
        assert response.status == 200
        assert len(await response.read()) == 1000
        assert "zoom_proxy" in response.cookies  # the refreshed session
    assert emulator.counters["refresh_ok"] == 1
    assert emulator.counters["recording_hits"] == 2


async def test_a_caller_needs_downloads_true(
    make_proxy: ProxyFactory, zoom: Zoom, storage: StorageServer
) -> None:
    recording = zoom.emulator.add_recording(1000)
    bearer = {"Authorization": f"Bearer {KEY}"}
    allowed = await make_proxy(**settings(zoom, allow=["GET /users/**"], downloads=True))
    refused = await make_proxy(**settings(zoom, allow=["GET /users/**"]))
    async with aiohttp.ClientSession() as client:
        async with client.get(
            through(allowed, download_url(zoom, recording)), headers=bearer
        ) as response:
            assert response.status == 200
            assert len(await response.read()) == 1000
        async with client.get(
            through(refused, download_url(zoom, recording)), headers=bearer
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"] == "caller_not_allowed"


async def test_curl_resumes_a_cut_download_byte_for_byte(
    proxy: Proxy, storage: StorageServer, tmp_path: Path
) -> None:
    recording = proxy.zoom.emulator.add_recording(SIZE)
    partial = tmp_path / "recording.mp4"
    partial.write_bytes(pattern(SIZE)[: SIZE // 3])  # what a cut download left
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "-C",
        "-",
        "-o",
        str(partial),
        "-H",
        f"Cookie: {proxy.cookie_header()}",
        through(proxy, download_url(proxy.zoom, recording)),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(curl.communicate(), 30)
    assert curl.returncode == 0, err.decode()
    assert partial.read_bytes() == pattern(SIZE)
    assert storage.requests[-1]["Range"] == f"bytes={SIZE // 3}-"


async def test_redirects_past_five_are_502_and_the_token_stays_on_its_origins(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    seen: list[str | None] = []

    async def hop(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        number = int(request.match_info["n"])
        return web.Response(status=302, headers={"Location": f"/rec/hop/{number + 1}"})

    async with web_host("/rec/hop/{n}", hop) as origin:
        proxy = await downloading_from(make_proxy, zoom.base_url)
        # Not a download origin: the URL itself is refused.
        async with proxy.client.get(through(proxy, f"{origin}/rec/hop/0")) as response:
            assert response.status == 400
        proxy = await downloading_from(make_proxy, origin)
        async with proxy.client.get(through(proxy, f"{origin}/rec/hop/0")) as response:
            assert response.status == 502
            assert (await response.json())["error"] == "too_many_redirects"
    assert len(seen) == 6
    assert all(value is not None and value.startswith("Bearer ") for value in seen)


async def test_a_signed_out_download_link_signs_in_and_comes_back_to_the_download(
    make_proxy: ProxyFactory, zoom: Zoom, storage: StorageServer
) -> None:
    proxy = await make_proxy(**settings(zoom))
    recording = download_url(zoom, zoom.emulator.add_recording(1000))
    navigation = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
    async with proxy.client.get(through(proxy, recording), headers=navigation) as response:
        assert response.status == 200
        assert response.url.path == "/download"
        assert response.url.query["url"] == recording
        assert await response.read() == pattern(1000)
    assert zoom.emulator.counters["code_ok"] == 1  # it went through sign-in


async def test_a_storage_host_breaking_off_cuts_the_client_off(
    proxy: Proxy, storage: StorageServer
) -> None:
    """So that the client can tell the download is incomplete (SPEC 6)."""
    storage.break_after = 1 << 20
    recording = proxy.zoom.emulator.add_recording(SIZE)
    async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_redirect_from_https_to_http_is_refused(tmp_path: Path) -> None:
    """The first hop is https (a certificate made for the test); its redirect to plain
    http is refused, not followed (following it would fail otherwise: nothing listens)."""

    async def downgrade(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://localhost:1/rec/x"})

    served, cert = tls_for_localhost(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    hosts = Pools(connect_timeout=5, read_timeout=5, buffer_limit=1 << 16, ssl_context=trusting)
    async with web_host("/rec/download/x", downgrade, tls=served) as origin:
        try:
            with pytest.raises(InsecureRedirect):
                await follow(
                    hosts, "GET", f"{origin}/rec/download/x", [], "token", (parse_origin(origin),)
                )
        finally:
            hosts.close()


async def raw_download(proxy: Proxy, recording: str) -> tuple[asyncio.StreamReader, Any]:
    """A download asked for on a connection whose client reads nothing until told to
    (a 4 KiB receive buffer, so the kernel holds next to nothing for it)."""
    target = through(proxy, download_url(proxy.zoom, recording)).removeprefix(proxy.url)
    host, port = proxy.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    cookie = proxy.cookie_header()
    writer.write(f"GET {target} HTTP/1.1\r\nHost: proxy\r\nCookie: {cookie}\r\n\r\n".encode())
    return reader, writer


async def test_a_client_that_reads_nothing_holds_the_storage_host_back(
    proxy: Proxy, storage: StorageServer
) -> None:
    """Back-pressure both ways: the proxy reads from the storage host only as the client
    takes the bytes, so a slow client never fills the proxy's memory."""
    size = 256 << 20
    recording = proxy.zoom.emulator.add_recording(size)
    reader, writer = await raw_download(proxy, recording)
    try:
        finished = proxy.zoom.emulator.wait_for_counter("recording_bodies_sent", 1)
        with pytest.raises(TimeoutError):  # unread, it would take well under a second
            await asyncio.wait_for(finished, timeout=2)
        # Held back: what was sent sits in the sockets' buffers and the proxy's bounded one.
        assert storage.sent < 64 << 20
        head = await reader.readuntil(b"\r\n\r\n")
        assert f"Content-Length: {size}\r\n".encode() in head
        digest, received = hashlib.sha256(), 0
        while received < size and (chunk := await reader.read(1 << 20)):
            digest.update(chunk)
            received += len(chunk)
    finally:
        writer.close()
    assert received == size
    assert digest.digest() == hashlib.sha256(pattern(size)).digest()


async def test_a_client_leaving_closes_the_storage_connection_at_once(
    proxy: Proxy, storage: StorageServer
) -> None:
    recording = proxy.zoom.emulator.add_recording(256 << 20)
    reader, writer = await raw_download(proxy, recording)
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()  # a reset: the client is gone
    await asyncio.wait_for(
        proxy.zoom.emulator.wait_for_counter("recording_bodies_cut", 1), timeout=10
    )
    assert storage.sent < 256 << 20
    assert proxy.app[DOWNLOAD_HOSTS].in_use == 0


async def test_a_storage_host_that_goes_silent_is_cut_off_after_upstream_timeout(
    make_proxy: ProxyFactory, zoom: Zoom, storage: StorageServer
) -> None:
    """The same stall limit as ``/api``'s (``upstream.timeout``), then the client's
    connection ends with the body incomplete."""
    proxy = await make_proxy(**settings(zoom), upstream={"timeout": 0.5})
    await proxy.sign_in()
    storage.stall_after = 1 << 20
    recording = proxy.zoom.emulator.add_recording(SIZE)
    async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.read(), timeout=10)
    hosts = proxy.app[DOWNLOAD_HOSTS]
    storage_host = hosts.for_url(URL(proxy.zoom.emulator.storage_url or ""))
    assert (hosts.in_use, storage_host.idle) == (0, 0)  # its connection closed, not kept


async def test_downloads_are_counted_and_timed_as_api_calls_are(
    proxy: Proxy, storage: StorageServer
) -> None:
    recording = proxy.zoom.emulator.add_recording(1000)
    for _ in range(2):
        async with proxy.client.get(through(proxy, download_url(proxy.zoom, recording))) as got:
            assert await got.read() == pattern(1000)
    bad = f"{proxy.url}/download?url=https%3A%2F%2Fevil.test%2Frec%2Fx"
    async with proxy.client.get(bad) as refused:
        assert refused.status == 400
    metrics = await scrape(proxy)
    counted = {
        status: value(
            metrics, "zoom_proxy_requests_total", route="download", method="GET", status=status
        )
        for status in ("2xx", "4xx")
    }
    assert counted == {"2xx": 2, "4xx": 1}
    # One observation per download (its hops are one exchange); none for the refused.
    assert value(metrics, "zoom_proxy_upstream_latency_seconds_count") == 2


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1/rec/x", "/rec/with space", "/rec/\x01"],
    ids=["another scheme", "a space", "a control character"],
)
async def test_a_redirect_that_cannot_be_followed_is_502(
    make_proxy: ProxyFactory, zoom: Zoom, location: str
) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    async with web_host("/rec/download/x", odd) as origin:
        proxy = await downloading_from(make_proxy, origin)
        async with proxy.client.get(through(proxy, f"{origin}/rec/download/x")) as response:
            assert response.status == 502
            assert (await response.json())["error"] == "upstream_unreachable"


async def test_no_log_line_shows_a_signed_storage_url_or_the_download_url(
    proxy: Proxy, storage: StorageServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording = proxy.zoom.emulator.add_recording(1000)
    url = download_url(proxy.zoom, recording)
    target = through(proxy, url).removeprefix(proxy.url)
    async with connection(proxy) as (reader, writer):
        # The second answer comes once the first is done and logged.
        writer.write(request("GET", target, proxy.cookie_header()))
        writer.write(request("GET", "/healthz", ""))
        downloaded, _ = await read_answers(reader, 2)
    assert downloaded.body == pattern(1000)
    lines = [f"{r.getMessage()} {getattr(r, 'access', '')}" for r in caplog.records]
    assert any("/download?url " in line for line in lines)  # the access line, keys only
    assert not [line for line in lines if re.search(r"signature=\w", line)]
    assert not [line for line in lines if url in line or quote(url, safe="") in line]


async def test_outbound_tls_trusts_the_certificates_in_ssl_cert_file(
    make_proxy: ProxyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first hop whose certificate no public CA signed is trusted once SSL_CERT_FILE
    names it (the system store, as OpenSSL reads it)."""

    async def recording(request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").startswith("Bearer ")
        return web.Response(body=b"recording" if bearer else b"", status=200 if bearer else 401)

    served, cert = tls_for_localhost(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    async with web_host("/rec/download/x", recording, tls=served) as origin:
        proxy = await downloading_from(make_proxy, origin)
        async with proxy.client.get(through(proxy, f"{origin}/rec/download/x")) as response:
            assert response.status == 200
            assert await response.read() == b"recording"
