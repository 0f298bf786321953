"""Cross-origin protection and CORS through the running proxy."""

from __future__ import annotations

import pytest

from tests.helpers.proxies import Proxy, ProxyFactory

FRONTEND = "http://127.0.0.1:5173"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": FRONTEND},  # same site, another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_origin_unsafe_requests_are_403_and_never_reach_zoom(
    signed_in: Proxy, headers: dict[str, str]
) -> None:
    before = len(signed_in.zoom.emulator.api_requests)
    async with signed_in.client.post(
        f"{signed_in.url}/api/users/me/meetings", json={"topic": "x"}, headers=headers
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "cross_origin"
    assert len(signed_in.zoom.emulator.api_requests) == before


async def test_a_cross_origin_form_cannot_sign_a_user_out(signed_in: Proxy) -> None:
    async with signed_in.client.post(
        f"{signed_in.url}/auth/logout", data={"a": "b"}, headers={"Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
    async with signed_in.client.get(f"{signed_in.url}/auth/me") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}]
)
async def test_same_origin_and_non_browser_unsafe_requests_pass(
    signed_in: Proxy, headers: dict[str, str]
) -> None:
    async with signed_in.client.post(
        f"{signed_in.url}/api/users/me/meetings", json={"topic": "x"}, headers=headers
    ) as response:
        assert response.status == 201


async def test_a_request_from_our_own_origin_passes(signed_in: Proxy) -> None:
    async with signed_in.client.delete(
        f"{signed_in.url}/api/_test/echo/x", headers={"Origin": signed_in.url}
    ) as response:
        assert response.status == 200


async def test_an_allowed_origin_gets_credentialed_cors(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(cors={"allowed_origins": [FRONTEND]})
    await proxy.sign_in()
    async with proxy.client.post(
        f"{proxy.url}/api/users/me/meetings", json={"topic": "x"}, headers={"Origin": FRONTEND}
    ) as response:
        assert response.status == 201
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in response.headers.getall("Vary")


async def test_a_streamed_answer_to_an_allowed_origin_carries_cors(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(cors={"allowed_origins": [FRONTEND]})
    await proxy.sign_in()
    async with proxy.client.get(
        f"{proxy.url}/api/_test/download",
        params={"bytes": str(1 << 20)},
        headers={"Origin": FRONTEND},
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert len(await response.read()) == 1 << 20  # past the small-body limit: streamed


async def test_a_preflight_from_an_allowed_origin_is_answered(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(cors={"allowed_origins": [FRONTEND]})
    async with proxy.client.options(
        f"{proxy.url}/api/users/me/meetings",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == "content-type"


async def test_a_preflight_from_an_unlisted_origin_is_403_without_cors(proxy: Proxy) -> None:
    async with proxy.client.options(
        f"{proxy.url}/api/users/me/meetings",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_401_to_an_allowed_origin_carries_cors(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(cors={"allowed_origins": [FRONTEND]})
    async with proxy.client.get(
        f"{proxy.url}/api/users/me", headers={"Origin": FRONTEND}
    ) as response:
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


async def test_an_unknown_origin_is_never_reflected(signed_in: Proxy) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/api/users/me", headers={"Origin": "https://evil.example"}
    ) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
