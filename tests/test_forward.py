"""``/api/*`` forwarding, end to end: proxy and emulator on loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from proxy.emulator import download_chunks
from tests.helpers.proxies import Proxy, ProxyFactory
from tests.helpers.raw_http import raw_request

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


UUID_PATH = "/meetings/%252FajXp112QmuoKj4854875%253D%253D/recordings"


async def echo(proxy: Proxy, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async with proxy.client.request(
        method, f"{proxy.url}/api/_test/echo{path}", **kwargs
    ) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def header_names(record: dict[str, Any]) -> set[str]:
    return {name.lower() for name, _ in record["headers"]}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_every_method_is_forwarded(signed_in: Proxy, method: str) -> None:
    record = await echo(signed_in, method, "/x", data=b"body" if method != "GET" else None)
    assert record["method"] == method


async def test_head_is_forwarded_without_a_body(signed_in: Proxy) -> None:
    async with signed_in.client.head(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 200
        assert await response.read() == b""
    assert signed_in.zoom.emulator.api_requests[-1].method == "HEAD"


async def test_double_encoded_meeting_uuids_arrive_byte_for_byte(signed_in: Proxy) -> None:
    request = (
        f"GET /api/_test/echo{UUID_PATH}?type=past&next_page_token=a%2Fb%3D HTTP/1.1\r\n"
        f"Host: x\r\nCookie: {signed_in.cookie_header()}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await raw_request(signed_in.url, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert signed_in.zoom.emulator.api_requests[-1].raw_path == (
        f"/v2/_test/echo{UUID_PATH}?type=past&next_page_token=a%2Fb%3D"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/../oauth/token",
        "/api/users/%2e%2e/x",
        "/api/users/%2E%2E/x",
        "/api/users/..%2fx",
        "/api/users/..;/x",
        "/api//evil.example/x",
        "/api/a%2F%2Fb",
        "/api/%2Fusers",
        "/api/users%2F..%2F..%2Foauth/token",
        "/api/users/.%00",
    ],
)
async def test_dot_and_empty_segments_are_400_and_never_reach_zoom(
    signed_in: Proxy, path: str
) -> None:
    before = len(signed_in.zoom.emulator.api_requests)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {signed_in.cookie_header()}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await raw_request(signed_in.url, request)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"error": "unsafe_path"' in answer
    assert len(signed_in.zoom.emulator.api_requests) == before


@pytest.mark.parametrize("code", [f"%{n:02x}" for n in [*range(0x20), 0x7F]])
async def test_every_control_character_in_the_path_is_400(signed_in: Proxy, code: str) -> None:
    """%0a included: once decoded, a line feed must not make the path miss /api's route."""
    before = len(signed_in.zoom.emulator.api_requests)
    request = (
        f"GET /api/users/me{code} HTTP/1.1\r\nHost: x\r\n"
        f"Cookie: {signed_in.cookie_header()}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await raw_request(signed_in.url, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b'"error": "unsafe_path"' in answer
    assert len(signed_in.zoom.emulator.api_requests) == before


async def test_client_credentials_cookies_and_hop_by_hop_headers_never_reach_zoom(
    signed_in: Proxy,
) -> None:
    record = await echo(
        signed_in,
        "GET",
        "/h",
        headers={
            "Authorization": "Bearer client-supplied",
            "Connection": "keep-alive, X-Named-In-Connection",
            "X-Named-In-Connection": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "TE": "trailers",
            "X-Kept": "yes",
        },
    )
    names = header_names(record)
    assert {
        "cookie",
        "x-named-in-connection",
        "keep-alive",
        "proxy-authorization",
        "te",
    }.isdisjoint(names)
    authorizations = [v for k, v in record["headers"] if k.lower() == "authorization"]
    assert len(authorizations) == 1
    assert authorizations[0] != "Bearer client-supplied"
    assert signed_in.zoom.emulator.user_for(authorizations[0].removeprefix("Bearer ")) is not None
    assert ["X-Kept", "yes"] in record["headers"]
    assert all(
        signed_in.cookie_header().split("=", 1)[1][:40] not in v for _, v in record["headers"]
    )


async def test_expect_continue_is_handled_here_not_forwarded(signed_in: Proxy) -> None:
    record = await echo(signed_in, "POST", "/expect", data=b"x" * 100, expect100=True)
    assert "expect" not in header_names(record)
    assert record["body_length"] == 100


async def test_host_is_zooms_not_the_clients(signed_in: Proxy) -> None:
    record = await echo(signed_in, "GET", "/host", headers={"Host": "attacker.example"})
    hosts = [v for k, v in record["headers"] if k.lower() == "host"]
    assert hosts == [signed_in.zoom.base_url.removeprefix("http://")]


async def test_the_proxy_adds_no_headers_of_its_own_choosing(signed_in: Proxy) -> None:
    record = await echo(signed_in, "POST", "/bare", data=b"raw", skip_auto_headers=["Content-Type"])
    assert "content-type" not in header_names(record)


async def test_zoom_set_cookie_is_dropped(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/api/_test/set_cookie") as response:
        assert response.status == 200
        assert "Set-Cookie" not in response.headers
    assert not any(c.key.startswith(("zm_", "_zm_")) for c in signed_in.client.cookie_jar)


async def test_compressed_bodies_pass_untouched(signed_in: Proxy) -> None:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw_client,
        raw_client.get(
            f"{signed_in.url}/api/_test/gzip", headers={"Cookie": signed_in.cookie_header()}
        ) as response,
    ):
        body = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert hashlib.sha256(body).hexdigest() == response.headers["X-Original-SHA256"]
    assert json.loads(gzip.decompress(body))["items"][:3] == [0, 1, 2]


async def test_429_and_its_retry_after_date_pass_unchanged(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/api/_test/rate_limited") as response:
        assert response.status == 429
        retry_after = response.headers["Retry-After"]
        assert retry_after.endswith(" GMT")
        assert response.headers["X-RateLimit-Type"] == "QPS"
        assert (await response.json())["code"] == 429


async def test_large_downloads_stream_through_intact(signed_in: Proxy) -> None:
    size = 32 * 1024 * 1024 + 7
    expected = hashlib.sha256()
    for chunk in download_chunks(size):
        expected.update(chunk)
    received = hashlib.sha256()
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/download", params={"bytes": str(size)}
    ) as response:
        assert response.headers["Content-Length"] == str(size)
        async for chunk in response.content.iter_chunked(1 << 16):
            received.update(chunk)
    assert received.hexdigest() == expected.hexdigest()


async def test_large_uploads_stream_through_intact(signed_in: Proxy) -> None:
    body = os.urandom(8 * 1024 * 1024)

    async def chunks() -> Any:
        for start in range(0, len(body), 1 << 16):
            yield body[start : start + (1 << 16)]

    async with signed_in.client.put(f"{signed_in.url}/api/_test/upload", data=chunks()) as response:
        assert response.status == 200
        result = await response.json()
    assert result == {"body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}


async def test_a_body_zoom_breaks_off_is_not_completed_to_the_client(signed_in: Proxy) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/broken", params={"bytes": str(4 * 1024 * 1024)}
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_small_body_that_arrives_after_its_headers_is_relayed_whole(
    signed_in: Proxy,
) -> None:
    async def fetch() -> tuple[int, bytes]:
        async with signed_in.client.get(
            f"{signed_in.url}/api/_test/hold_body", params={"bytes": "1000"}
        ) as response:
            return response.status, await response.read()

    answer = asyncio.create_task(fetch())
    await asyncio.wait_for(signed_in.zoom.emulator.wait_for_held(1), 10)
    signed_in.zoom.emulator.release_held()
    assert await asyncio.wait_for(answer, 10) == (200, b"".join(download_chunks(1000)))


async def test_a_small_body_zoom_breaks_off_is_a_502_never_a_short_200(signed_in: Proxy) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/broken", params={"bytes": "1000"}
    ) as response:
        assert response.status == 502
        assert (await response.json())["error"] == "upstream_unreachable"


async def test_a_browser_navigation_signed_out_is_sent_to_sign_in(proxy: Proxy) -> None:
    async with proxy.client.get(
        f"{proxy.url}/api/users/me?page_size=5",
        headers={"Accept": "text/html,application/xhtml+xml"},
        allow_redirects=False,
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == (
            f"{proxy.url}/auth/login?next=%2Fapi%2Fusers%2Fme%3Fpage_size%3D5"
        )
    assert proxy.zoom.emulator.api_requests == []


async def test_a_script_signed_out_gets_401_json_with_login_url(proxy: Proxy) -> None:
    async with proxy.client.post(f"{proxy.url}/api/users/me/meetings", json={}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Cookie")
        body = await response.json()
    assert body["error"] == "unauthenticated"
    assert body["login_url"] == f"{proxy.url}/auth/login?next=%2Fapi%2Fusers%2Fme%2Fmeetings"
    assert proxy.zoom.emulator.api_requests == []


async def test_meetings_can_be_listed_and_created(signed_in: Proxy) -> None:
    async with signed_in.client.post(
        f"{signed_in.url}/api/users/me/meetings", json={"topic": "Standup"}
    ) as response:
        assert response.status == 201
    async with signed_in.client.get(f"{signed_in.url}/api/users/me/meetings") as response:
        topics = [m["topic"] for m in (await response.json())["meetings"]]
    assert topics == ["Standup"]


async def test_an_unreachable_api_is_502_json(make_proxy: ProxyFactory, zoom: Any) -> None:
    proxy = await make_proxy()
    await proxy.sign_in()
    dead = await make_proxy(zoom={"api_base_url": f"http://127.0.0.1:{unused_port()}/v2"})
    async with dead.client.get(
        f"{dead.url}/api/users/me", headers={"Cookie": proxy.cookie_header()}
    ) as response:
        assert response.status == 502
        assert (await response.json())["error"] == "upstream_unreachable"


async def test_a_client_that_leaves_mid_download_closes_the_upstream_request(
    signed_in: Proxy,
) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/download", params={"bytes": str(1 << 30)}
    ) as response:
        await response.content.readexactly(1 << 20)
        response.close()
    await asyncio.wait_for(
        signed_in.zoom.emulator.wait_for_counter("downloads_aborted", 1), timeout=10
    )


async def test_no_response_headers_within_the_timeout_is_504(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"timeout": 0.3})
    await proxy.sign_in()
    async with proxy.client.get(f"{proxy.url}/api/_test/hold_headers") as response:
        assert response.status == 504
        assert (await response.json())["error"] == "upstream_timeout"
    await asyncio.wait_for(proxy.zoom.emulator.wait_for_counter("holds_aborted", 1), timeout=10)


async def test_a_body_that_goes_silent_is_cut_off_not_completed(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"timeout": 0.3})
    await proxy.sign_in()
    async with proxy.client.get(
        f"{proxy.url}/api/_test/hold_body", params={"bytes": str(1 << 20)}
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    await asyncio.wait_for(proxy.zoom.emulator.wait_for_counter("holds_aborted", 1), timeout=10)


async def test_one_pooled_keep_alive_connection_serves_successive_requests(
    signed_in: Proxy,
) -> None:
    for _ in range(3):
        async with signed_in.new_client().get(
            f"{signed_in.url}/api/users/me", headers={"Cookie": signed_in.cookie_header()}
        ) as response:
            assert response.status == 200
    ports = {r.peer_port for r in signed_in.zoom.emulator.api_requests[-3:]}
    assert len(ports) == 1


@pytest.mark.parametrize("path", ["/api", "/apix/users/me", "/ap/users/me", "/API/users/me"])
async def test_only_paths_under_api_slash_are_forwarded(signed_in: Proxy, path: str) -> None:
    seen_by_zoom = len(signed_in.zoom.emulator.api_requests)
    async with signed_in.client.get(f"{signed_in.url}{path}") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    assert len(signed_in.zoom.emulator.api_requests) == seen_by_zoom
