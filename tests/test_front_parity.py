"""The front's lane answers exactly as aiohttp's path would: the same request, sent to a
proxy with the lane and to one without, gets the same answer.

Both proxies share the emulator and the session key, so one sign-in serves both.
Only what must differ is set aside: the Date, and the sign-in URL's port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from proxy import serve
from proxy.app import create_app
from proxy.config import settings_from_mapping
from proxy.emulator.api import download_chunks
from proxy.http.listen import EagerSite
from tests.helpers.proxies import Proxy, Zoom, proxy_config, signed_in_cookie
from tests.helpers.raw_http import Answer, connection_to, read_answers

Headers = list[tuple[str, str]]


@dataclass
class Pair:
    lane: str
    aiohttp: str
    cookie: str


async def _start(zoom: Zoom, *, lane: bool) -> Proxy:
    port = unused_port()
    settings = settings_from_mapping(proxy_config(zoom.base_url, port), environ={})
    app = create_app(settings)
    if lane:
        runner = await serve.start(app, host="127.0.0.1", port=port)
    else:  # the same server, every connection read by aiohttp from the start
        runner = serve.ProxyRunner(app, **serve.SERVER_OPTIONS)
        await runner.setup()
        await EagerSite(runner, "127.0.0.1", port, backlog=serve.BACKLOG).start()
    client = aiohttp.ClientSession()
    return Proxy(settings, settings.public_url, zoom, app, client, runner)


@pytest.fixture
async def pair(zoom: Zoom) -> AsyncIterator[Pair]:
    started = [await _start(zoom, lane=True), await _start(zoom, lane=False)]
    try:
        lane, plain = started
        yield Pair(lane.url, plain.url, await signed_in_cookie(lane))
    finally:
        for proxy in started:
            await proxy.client.close()
            await proxy.runner.cleanup()


async def _ask(url: str, raw: bytes, *, head: bool = False) -> Answer:
    async with connection_to(url) as (reader, writer):
        writer.write(raw)
        if head:  # no body follows a HEAD answer's headers
            text = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            status, *lines = text.decode().split("\r\n")
            pairs = [line.split(": ", 1) for line in lines if line]
            return Answer(int(status.split()[1]), [(name, value) for name, value in pairs])
        [answer] = await read_answers(reader, 1)
        return answer


def _comparable(answer: Answer, url: str) -> tuple[int, Headers, bytes]:
    headers = sorted(
        (name.lower(), value.replace(url, "PROXY"))
        for name, value in answer.headers
        if name.lower() != "date"
    )
    return answer.status, headers, answer.body.replace(url.encode(), b"PROXY")


CASES = {
    "a small GET": ("GET", "/api/users/me", [], b""),
    "a HEAD": ("HEAD", "/api/users/me", [], b""),
    "a raw path and query": ("GET", "/api/_test/echo/a%252Fb?x=1&y=%2F", [], b""),
    "a POST with a body": (
        "POST",
        "/api/_test/echo/post",
        ["Content-Type: application/json", "X-Custom: kept"],
        b'{"topic": "t"}',
    ),
    "Zoom's 404": ("GET", "/api/no/such/thing", [], b""),
    "Zoom's 429": ("GET", "/api/_test/rate_limited", [], b""),
    "a compressed body": ("GET", "/api/_test/gzip", ["Accept-Encoding: gzip"], b""),
    "Zoom's cookies": ("GET", "/api/_test/set_cookie", [], b""),
    "a large body": ("GET", "/api/_test/download?bytes=300000", [], b""),
    "a body of unknown length": ("GET", "/api/_test/chunked?bytes=200000", [], b""),
    "forwarding headers, untrusted": (
        "GET",
        "/api/_test/echo/fwd",
        ["X-Forwarded-For: 10.0.0.1", "Forwarded: for=10.0.0.1", "X_Auth: x"],
        b"",
    ),
    "a hop-by-hop header named in Connection": (
        "GET",
        "/api/_test/echo/hop",
        ["Connection: keep-alive, X-Hop", "X-Hop: dropped"],
        b"",
    ),
}


@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES.values(), ids=CASES.keys())
async def test_the_lane_answers_as_aiohttps_path_does(
    pair: Pair, method: str, path: str, headers: list[str], body: bytes
) -> None:
    lines = [f"{method} {path} HTTP/1.1", "Host: zoom-proxy", f"Cookie: {pair.cookie}"]
    lines += ["X-Request-ID: parity-1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    head = method == "HEAD"
    on_lane = await _ask(pair.lane, raw, head=head)
    on_aiohttp = await _ask(pair.aiohttp, raw, head=head)
    lane_view = _comparable(on_lane, pair.lane)
    aiohttp_view = _comparable(on_aiohttp, pair.aiohttp)
    if path.startswith("/api/_test/echo/"):  # Zoom saw two connections: set the port aside
        lane_view, aiohttp_view = (
            (status, headers, body.split(b', "peer_port"')[0])
            for status, headers, body in (lane_view, aiohttp_view)
        )
    assert lane_view == aiohttp_view


async def test_a_body_of_unknown_length_arrives_whole_through_the_lane(pair: Pair) -> None:
    raw = (
        f"GET /api/_test/chunked?bytes=200000 HTTP/1.1\r\nHost: x\r\nCookie: {pair.cookie}\r\n\r\n"
    ).encode()
    answer = await _ask(pair.lane, raw)
    assert answer.header("Transfer-Encoding") == "chunked"
    assert answer.body == b"".join(download_chunks(200000))
