"""The app's own routes: probes, the built-in page, and errors in one JSON shape."""

from __future__ import annotations

import asyncio

from proxy.observe.lifecycle import LIFECYCLE
from tests.helpers.proxies import Proxy


async def test_healthz_and_readyz_answer_when_started(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with proxy.client.get(f"{proxy.url}/readyz") as response:
        assert (response.status, await response.json()) == (200, {"ready": True})


async def test_the_signed_out_page_offers_sign_in(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/") as response:
        page = await response.text()
    assert "Sign in with Zoom" in page
    assert 'href="/auth/login"' in page


async def test_the_signed_in_page_shows_the_user_a_curl_example_and_sign_out(
    signed_in: Proxy,
) -> None:
    async with signed_in.client.get(f"{signed_in.url}/") as response:
        page = await response.text()
    user = signed_in.zoom.emulator.user
    assert user.email in page
    assert f"curl -b zoom-jar.txt -c zoom-jar.txt {signed_in.url}/api/users/me" in page
    assert '<form method=post action="/auth/logout">' in page


async def test_the_signed_in_page_escapes_what_zoom_says(signed_in: Proxy) -> None:
    signed_in.zoom.emulator.user.first_name = "<script>alert(1)</script>"
    await signed_in.sign_in()
    async with signed_in.client.get(f"{signed_in.url}/") as response:
        page = await response.text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


async def test_unknown_routes_are_404_json(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/nope") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_wrong_methods_are_405_json_with_allow(proxy: Proxy) -> None:
    async with proxy.client.put(f"{proxy.url}/auth/me") as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["error"] == "method_not_allowed"


async def test_draining_reports_not_ready_but_keeps_serving_until_idle(signed_in: Proxy) -> None:
    lifecycle = signed_in.app[LIFECYCLE]
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/download", params={"bytes": str(8 << 20)}
    ) as download:
        await download.content.readexactly(1 << 16)
        drained = asyncio.create_task(lifecycle.drain())
        async with signed_in.new_client().get(f"{signed_in.url}/readyz") as response:
            assert response.status == 503
        async with signed_in.client.get(f"{signed_in.url}/auth/me") as response:
            assert response.status == 200
        assert not drained.done()
        assert len(await download.read()) == (8 << 20) - (1 << 16)
    await asyncio.wait_for(drained, timeout=10)


def test_aiohttps_c_parsers_are_in_use() -> None:
    from aiohttp import http_parser

    assert http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"
    assert http_parser.HttpResponseParser.__module__ == "aiohttp._http_parser"
