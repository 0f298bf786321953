"""The proxy's own answers name it, and no version a scanner could match flaws against."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import unused_port

from proxy.http.answers import SERVER
from tests.helpers.proxies import Proxy, ProxyFactory, signed_in_cookie
from tests.helpers.raw_http import connection, read_answers, request

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


def _assert_anonymous(server: str | None) -> None:
    assert server == SERVER
    assert "Python" not in server
    assert "aiohttp" not in server


@pytest.mark.parametrize("path", ["/healthz", "/no/such/page", "/api/users/me", "/auth/login"])
async def test_answers_from_the_app_name_no_versions(proxy: Proxy, path: str) -> None:
    async with proxy.client.get(f"{proxy.url}{path}", allow_redirects=False) as response:
        assert response.status < 500
        _assert_anonymous(response.headers.get("Server"))


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",  # refused by aiohttp's parser
        b"GET /api/x HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",  # refused by the front
    ],
    ids=["aiohttp_parser", "front"],
)
async def test_refusals_before_any_handler_name_no_versions(proxy: Proxy, raw: bytes) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(raw)
        [answer] = await read_answers(reader, 1)
        await asyncio.wait_for(reader.read(), 5)
    assert 400 <= answer.status < 500
    _assert_anonymous(answer.header("Server"))


async def test_a_lane_refusal_names_no_versions(make_proxy: ProxyFactory) -> None:
    """Zoom unreachable: the lane answers 502 itself."""
    cookie = await signed_in_cookie(await make_proxy())
    dead_api = await make_proxy(zoom={"api_base_url": f"http://127.0.0.1:{unused_port()}/v2"})
    async with connection(dead_api) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie))
        [answer] = await read_answers(reader, 1)
    assert answer.status == 502
    _assert_anonymous(answer.header("Server"))
