"""Service callers (SPEC 12), end to end: a backend calls Zoom as the account with a key
the proxy issued, through httpx as a Zoom SDK would, against the emulator's
Server-to-Server grant. Every test runs on both transports."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy.callers.registry import new_key
from tests.helpers.proxies import Proxy, ProxyFactory, Zoom
from tests.helpers.raw_http import raw_request

pytestmark = pytest.mark.both_transports

KEY, KEY_SHA256 = new_key()
OTHER_KEY, OTHER_SHA256 = new_key()


def service(zoom: Zoom, *callers: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The ``service`` section for the emulator's S2S app, with ``callers``."""
    emulator = zoom.emulator
    return {
        "account_id": emulator.account_id,
        "client_id": emulator.service_client_id,
        "client_secret": emulator.service_client_secret,
        "callers": list(callers)
        or [{"name": "reports-worker", "key_sha256": KEY_SHA256, "allow": ["* /**"]}],
        **changes,
    }


def caller(name: str = "reports-worker", **changes: Any) -> dict[str, Any]:
    return {"name": name, "key_sha256": KEY_SHA256, "allow": ["* /**"], **changes}


@pytest.fixture
async def served(make_proxy: ProxyFactory, zoom: Zoom) -> Proxy:
    """A proxy with both the user app and service callers."""
    return await make_proxy(service=service(zoom))


def sdk(proxy: Proxy, key: str = KEY) -> httpx.AsyncClient:
    """A backend's Zoom client: base URL the proxy's /api, token the caller key."""
    return httpx.AsyncClient(
        base_url=f"{proxy.url}/api", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.fixture
async def backend(served: Proxy) -> AsyncIterator[httpx.AsyncClient]:
    async with sdk(served) as client:
        yield client


async def test_a_caller_key_calls_zoom_with_the_accounts_token(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    emulator = served.zoom.emulator
    response = await backend.get("/users/me")
    assert response.status_code == 200
    sent = dict(emulator.api_requests[-1].headers)
    assert sent["Authorization"].startswith("Bearer ")
    assert KEY not in sent["Authorization"]
    assert emulator.counters["account_token_ok"] == 1


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer zps_unknown",
        b"Basic " + KEY.encode(),
        KEY.encode(),
        b"Bearer ",
        b"Bearer " + KEY.encode() + b"x",
        b"Bearer \xff\xfe",
        b"bearer" + KEY.encode(),
    ],
    ids=["unknown", "basic", "no-scheme", "empty", "longer", "not-utf8", "no-space"],
)
async def test_an_unknown_or_malformed_key_is_401_and_never_reaches_zoom(
    served: Proxy, authorization: bytes
) -> None:
    emulator = served.zoom.emulator
    answer = await raw_request(
        served.url,
        b"GET /api/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + authorization
        + b"\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b"\r\nWWW-Authenticate: Bearer" in head
    assert json.loads(body)["error"] == "invalid_caller_key"
    assert emulator.api_requests == []
    assert emulator.counters["token_requests"] == 0


async def test_a_caller_request_never_falls_back_to_the_cookie(served: Proxy) -> None:
    await served.sign_in()
    async with served.client.get(
        f"{served.url}/api/users/me", headers={"Authorization": "Bearer zps_wrong"}
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_caller_key"


async def test_cookies_on_a_caller_request_are_neither_used_nor_forwarded(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    await served.sign_in()
    response = await backend.get("/users/me", headers={"Cookie": served.cookie_header()})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    names = [name.lower() for name, _ in served.zoom.emulator.api_requests[-1].headers]
    assert "cookie" not in names


async def test_without_service_a_client_authorization_is_dropped_and_the_cookie_used(
    signed_in: Proxy,
) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/api/users/me", headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        assert response.status == 200
    sent = dict(signed_in.zoom.emulator.api_requests[-1].headers)
    assert KEY not in sent["Authorization"]


async def test_a_call_no_rule_allows_is_403_and_never_reaches_zoom(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(service=service(zoom, caller(allow=["GET /report/**"])))
    before = len(zoom.emulator.api_requests)
    async with sdk(proxy) as client:
        response = await client.get("/users/me")
    assert response.status_code == 403
    assert response.json()["error"] == "caller_not_allowed"
    assert len(zoom.emulator.api_requests) == before


async def test_a_get_rule_does_not_allow_head(make_proxy: ProxyFactory, zoom: Zoom) -> None:
    proxy = await make_proxy(service=service(zoom, caller(allow=["GET /users/*"])))
    async with sdk(proxy) as client:
        assert (await client.get("/users/me")).status_code == 200
        assert (await client.head("/users/me")).status_code == 403


async def test_a_single_encoded_uuid_is_one_segment_for_the_rules(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(service=service(zoom, caller(allow=["GET /past_meetings/*"])))
    async with sdk(proxy) as client:
        allowed = await client.get("/past_meetings/Gx3Zp9%2FkQ0a1b2c3d4e5f6%3D%3D")
        refused = await client.get("/past_meetings/Gx3Zp9/participants")
    assert allowed.status_code == 404  # reached Zoom, which has no such meeting
    assert refused.status_code == 403


async def test_the_account_token_is_minted_once_and_kept(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    assert served.zoom.emulator.counters["token_requests"] == 0  # minted lazily
    for _ in range(3):
        assert (await backend.get("/users/me")).status_code == 200
    assert served.zoom.emulator.counters["account_token_ok"] == 1


async def test_a_token_expiring_within_the_margin_is_minted_again(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(service=service(zoom), refresh={"margin": 3600})
    async with sdk(proxy) as client:
        for _ in range(2):
            assert (await client.get("/users/me")).status_code == 200
    assert zoom.emulator.counters["account_token_ok"] == 2


async def test_50_concurrent_callers_share_one_mint(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    responses = await asyncio.gather(*(backend.get("/users/me") for _ in range(50)))
    assert {response.status_code for response in responses} == {200}
    assert served.zoom.emulator.counters["token_requests"] == 1


async def test_50_concurrent_callers_at_expiry_share_one_failing_mint(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    """The token endpoint hangs: the one mint times out after upstream.timeout (2 s
    here), and that failure answers all 50."""
    emulator = served.zoom.emulator
    assert (await backend.get("/users/me")).status_code == 200
    emulator.expire_access_tokens()
    emulator.token_endpoint_mode = "slow"
    calls_before = emulator.counters["token_requests"]
    responses = await asyncio.gather(*(backend.get("/users/me") for _ in range(50)))
    assert {response.status_code for response in responses} == {503}
    assert emulator.counters["token_requests"] - calls_before == 1


async def test_zooms_401_mints_again_and_retries_once(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    emulator = served.zoom.emulator
    assert (await backend.get("/users/me")).status_code == 200
    emulator.expire_access_tokens()
    response = await backend.post("/users/me/meetings", json={"topic": "Nightly report"})
    assert response.status_code == 201
    assert emulator.counters["account_token_ok"] == 2
    assert emulator.counters["api_401"] == 1


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [("down", 503, "token_endpoint_unavailable"), ("garbage", 502, "token_endpoint_invalid")],
)
async def test_a_failing_token_endpoint_is_a_clear_5xx(
    served: Proxy, backend: httpx.AsyncClient, mode: str, status: int, error: str
) -> None:
    served.zoom.emulator.token_endpoint_mode = mode
    response = await backend.get("/users/me")
    assert (response.status_code, response.json()["error"]) == (status, error)


async def test_a_hanging_token_endpoint_is_503_within_the_upstream_timeout(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(service=service(zoom), upstream={"timeout": 0.5})
    zoom.emulator.token_endpoint_mode = "slow"
    async with sdk(proxy) as client:
        response = await asyncio.wait_for(client.get("/users/me"), timeout=5)
    assert response.status_code == 503


@pytest.mark.parametrize(
    ("changes", "at_fault"),
    [
        ({"client_secret": "not-the-secret"}, "service.client_id"),
        ({"account_id": "not-the-account"}, "service.account_id"),
    ],
    ids=["credentials", "account"],
)
async def test_refused_service_credentials_are_502_and_one_error_line_naming_the_key(
    make_proxy: ProxyFactory,
    zoom: Zoom,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, str],
    at_fault: str,
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await make_proxy(service=service(zoom, **changes))
    async with sdk(proxy) as client:
        response = await client.get("/users/me")
    assert (response.status_code, response.json()["error"]) == (
        502,
        "service_credentials_rejected",
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert at_fault in errors[0]
    assert "not-the-secret" not in caplog.text


async def test_a_caller_over_its_rate_gets_429_with_whole_seconds(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(service=service(zoom, caller(rate_per_second=1)))
    before = len(zoom.emulator.api_requests)
    async with sdk(proxy) as client:
        answers = [await client.get("/users/me") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]  # burst: twice the rate
    assert answers[2].headers["Retry-After"].isdigit()
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(zoom.emulator.api_requests) == before + 2


async def test_buckets_are_per_caller(make_proxy: ProxyFactory, zoom: Zoom) -> None:
    proxy = await make_proxy(
        service=service(
            zoom,
            caller(rate_per_second=1),
            caller("sync-worker", key_sha256=OTHER_SHA256, rate_per_second=1),
        )
    )
    async with sdk(proxy) as first, sdk(proxy, OTHER_KEY) as second:
        assert [(await first.get("/users/me")).status_code for _ in range(3)][-1] == 429
        assert (await second.get("/users/me")).status_code == 200


async def test_the_access_log_names_the_caller(
    served: Proxy, backend: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    assert (await backend.get("/users/me")).status_code == 200
    [line] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp.access" and "/api/users/me" in r.getMessage()
    ]
    assert "caller=reports-worker" in line


async def test_metrics_count_caller_requests_and_mints(
    served: Proxy, backend: httpx.AsyncClient
) -> None:
    assert (await backend.get("/users/me")).status_code == 200
    assert (await backend.get("/users/nobody/x")).status_code == 404
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{served.url}/metrics")).text
    assert 'zoom_proxy_caller_requests_total{caller="reports-worker",status="2xx"} 1.0' in metrics
    assert 'zoom_proxy_caller_requests_total{caller="reports-worker",status="4xx"} 1.0' in metrics
    assert 'zoom_proxy_account_token_mints_total{outcome="ok"} 1.0' in metrics


async def test_no_key_secret_or_token_reaches_any_log_line(
    served: Proxy, backend: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = served.zoom.emulator
    assert (await backend.get("/users/me")).status_code == 200
    token = dict(emulator.api_requests[-1].headers)["Authorization"].removeprefix("Bearer ")
    emulator.expire_access_tokens()
    assert (await backend.get("/users/me")).status_code == 200
    async with sdk(served, "zps_" + "x" * 43) as stranger:
        assert (await stranger.get("/users/me")).status_code == 401
    emulator.token_endpoint_mode = "garbage"
    emulator.expire_access_tokens()
    assert (await backend.get("/users/me")).status_code == 502
    written = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (KEY, "x" * 43, emulator.service_client_secret, token):
        assert secret not in written


async def test_a_service_only_proxy_serves_callers_and_no_sign_in(
    make_proxy: ProxyFactory, zoom: Zoom
) -> None:
    proxy = await make_proxy(zoom={"client_id": None, "client_secret": None}, service=service(zoom))
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        assert (await client.get("/auth/login")).status_code == 404
        index = await client.get("/")
        assert "service callers only" in index.text
        anonymous = await client.get("/api/users/me")
        assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_caller_key")
    async with sdk(proxy) as client:
        assert (await client.get("/users/me")).status_code == 200
