"""Transparent refresh, end to end: proactive, reactive, single flight, rotation grace."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time

import pytest
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet

from tests.helpers.proxies import (
    SESSION_KEY,
    Proxy,
    ProxyFactory,
    get_me,
    set_session_cookie,
    sign_in_with_expiring_token,
)

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


async def test_a_token_expiring_within_the_margin_is_refreshed_before_forwarding(
    proxy: Proxy,
) -> None:
    cookie = await sign_in_with_expiring_token(proxy)
    response = await get_me(proxy, cookie)
    assert response.status == 200
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1
    assert proxy.zoom.emulator.counters["api_401"] == 0
    assert set_session_cookie(response)


async def test_the_refreshed_cookie_is_used_without_refreshing_again(proxy: Proxy) -> None:
    await sign_in_with_expiring_token(proxy)
    async with proxy.client.get(f"{proxy.url}/api/users/me") as response:
        assert response.status == 200
    async with proxy.client.get(f"{proxy.url}/api/users/me") as response:
        assert response.status == 200
        assert "zoom_proxy" not in response.cookies
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1


async def test_an_upstream_401_refreshes_and_retries_once(signed_in: Proxy) -> None:
    signed_in.zoom.emulator.expire_access_tokens()
    response = await get_me(signed_in, signed_in.cookie_header())
    assert response.status == 200
    assert signed_in.zoom.emulator.counters["refresh_ok"] == 1
    assert signed_in.zoom.emulator.counters["api_401"] == 1
    assert set_session_cookie(response)


async def test_a_401_about_the_resource_passes_through_without_refresh_or_replay(
    signed_in: Proxy,
) -> None:
    """Zoom's code 1010 ("User does not belong to this account") is about the webinar:
    new tokens would get the same answer."""
    emulator = signed_in.zoom.emulator
    before = len(emulator.api_requests)
    async with signed_in.client.get(f"{signed_in.url}/api/past_webinars/93123/polls") as response:
        assert response.status == 401
        assert await response.json() == {
            "code": 1010,
            "message": "User does not belong to this account",
        }
        assert not set_session_cookie(response)
    assert len(emulator.api_requests) == before + 1
    assert emulator.counters["refresh_ok"] == 0


async def test_three_resource_401s_rotate_no_refresh_token(signed_in: Proxy) -> None:
    cookie = signed_in.cookie_header()
    for _ in range(3):
        async with signed_in.client.get(
            f"{signed_in.url}/api/past_webinars/93123/polls", headers={"Cookie": cookie}
        ) as response:
            assert response.status == 401
    assert signed_in.zoom.emulator.counters["refresh_ok"] == 0
    assert (await get_me(signed_in, cookie)).status == 200


async def test_a_post_refused_with_a_resource_401_is_sent_once(signed_in: Proxy) -> None:
    emulator = signed_in.zoom.emulator
    before = len(emulator.api_requests)
    async with signed_in.client.post(
        f"{signed_in.url}/api/_test/unauthorized?code=1010", data=b'{"topic": "once"}'
    ) as response:
        assert response.status == 401
        assert (await response.json())["code"] == 1010
    assert len(emulator.api_requests) == before + 1
    assert emulator.counters["refresh_ok"] == 0


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("?code=124", b'{"code": 124, "message": "Unauthorized"}'),
        ("", b"Unauthorized"),
        ("?code=none", b'{"message": "Unauthorized"}'),
    ],
    ids=["code-124", "plain-text", "json-without-code"],
)
async def test_a_401_about_the_token_refreshes_and_replays_once(
    signed_in: Proxy, query: str, body: bytes
) -> None:
    """Code 124, or no Zoom JSON error at all: a refresh may cure it. Here Zoom keeps
    refusing, so the replay's 401 reaches the client, with the refreshed session."""
    emulator = signed_in.zoom.emulator
    before = len(emulator.api_requests)
    async with signed_in.client.post(
        f"{signed_in.url}/api/_test/unauthorized{query}", data=b"replayable"
    ) as response:
        assert response.status == 401
        assert await response.read() == body
        assert set_session_cookie(response)
    first, replay = emulator.api_requests[before:]
    assert first.body_sha256 == replay.body_sha256 == hashlib.sha256(b"replayable").hexdigest()
    assert emulator.counters["refresh_ok"] == 1


async def test_a_resource_401_to_a_body_too_big_to_replay_keeps_the_session(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(upstream={"max_replay_body": 100})
    await proxy.sign_in()
    async with proxy.client.put(
        f"{proxy.url}/api/_test/unauthorized?code=1010", data=b"x" * 1000
    ) as response:
        assert response.status == 401
        assert (await response.json())["code"] == 1010
        assert not set_session_cookie(response)
    assert proxy.zoom.emulator.counters["refresh_ok"] == 0


async def test_a_replayable_post_body_is_sent_again_after_a_refresh(signed_in: Proxy) -> None:
    signed_in.zoom.emulator.expire_access_tokens()
    body = b'{"topic": "replayed"}' * 1000
    async with signed_in.client.post(f"{signed_in.url}/api/_test/echo/post", data=body) as response:
        assert response.status == 200
        record = await response.json()
    digest = hashlib.sha256(body).hexdigest()
    assert record["body_sha256"] == digest
    first, retry = signed_in.zoom.emulator.api_requests[-2:]
    assert (first.body_sha256, retry.body_sha256) == (digest, digest)
    assert signed_in.zoom.emulator.counters["refresh_ok"] == 1


async def test_a_chunked_body_within_the_replay_limit_is_replayed(signed_in: Proxy) -> None:
    signed_in.zoom.emulator.expire_access_tokens()
    parts = [b"a" * 1000, b"b" * 1000]

    async def chunked() -> object:
        for part in parts:
            yield part

    async with signed_in.client.post(
        f"{signed_in.url}/api/_test/echo/chunked", data=chunked()
    ) as response:
        assert response.status == 200
        assert (await response.json())["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_a_body_too_big_to_replay_gets_zooms_401_with_the_refreshed_cookie(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(upstream={"max_replay_body": 100})
    await proxy.sign_in()
    proxy.zoom.emulator.expire_access_tokens()
    async with proxy.client.put(f"{proxy.url}/api/_test/upload", data=b"x" * 1000) as response:
        assert response.status == 401
        assert (await response.json())["code"] == 124
        assert set_session_cookie(response)
    async with proxy.client.put(f"{proxy.url}/api/_test/upload", data=b"x" * 1000) as response:
        assert response.status == 200
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1


async def test_25_concurrent_requests_with_an_expiring_session_refresh_once(proxy: Proxy) -> None:
    cookie = await sign_in_with_expiring_token(proxy)
    responses = await asyncio.gather(*(get_me(proxy, cookie) for _ in range(25)))
    assert [r.status for r in responses] == [200] * 25
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1
    assert proxy.zoom.emulator.counters["refresh_rejected"] == 0
    assert all(set_session_cookie(r) for r in responses)


async def test_25_concurrent_requests_whose_token_zoom_refuses_refresh_once(
    signed_in: Proxy,
) -> None:
    cookie = signed_in.cookie_header()
    signed_in.zoom.emulator.expire_access_tokens()
    responses = await asyncio.gather(*(get_me(signed_in, cookie) for _ in range(25)))
    assert [r.status for r in responses] == [200] * 25
    assert signed_in.zoom.emulator.counters["refresh_ok"] == 1
    assert signed_in.zoom.emulator.counters["refresh_rejected"] == 0


async def test_a_late_superseded_cookie_is_served_with_the_successor(signed_in: Proxy) -> None:
    superseded = signed_in.cookie_header()
    signed_in.zoom.emulator.expire_access_tokens()
    assert (await get_me(signed_in, superseded)).status == 200
    late = await get_me(signed_in, superseded)
    assert late.status == 200
    assert set_session_cookie(late)
    assert signed_in.zoom.emulator.counters["refresh_ok"] == 1
    assert signed_in.zoom.emulator.counters["refresh_rejected"] == 0


async def test_without_a_rotation_grace_a_late_superseded_cookie_is_signed_out(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(refresh={"rotation_grace": 0})
    await proxy.sign_in()
    superseded = proxy.cookie_header()
    proxy.zoom.emulator.expire_access_tokens()
    assert (await get_me(proxy, superseded)).status == 200
    assert (await get_me(proxy, superseded)).status == 401
    assert proxy.zoom.emulator.counters["refresh_rejected"] == 1


async def test_a_rejected_refresh_clears_the_session_and_answers_unauthenticated(
    signed_in: Proxy,
) -> None:
    signed_in.zoom.emulator.revoke_all()
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 401
        assert (await response.json())["error"] == "unauthenticated"
        assert response.cookies["zoom_proxy"]["max-age"] == "0"
    assert signed_in.session_cookies() == {}


async def test_token_endpoint_down_is_503_and_the_session_survives(signed_in: Proxy) -> None:
    emulator = signed_in.zoom.emulator
    emulator.expire_access_tokens()
    emulator.token_endpoint_mode = "down"
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "token_endpoint_unavailable"
        assert "zoom_proxy" not in response.cookies
    emulator.token_endpoint_mode = "ok"
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 200


async def test_token_endpoint_timing_out_is_503(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"timeout": 0.3})
    await proxy.sign_in()
    proxy.zoom.emulator.expire_access_tokens()
    proxy.zoom.emulator.token_endpoint_mode = "slow"
    async with proxy.client.get(f"{proxy.url}/api/users/me") as response:
        assert response.status == 503
        assert "zoom_proxy" not in response.cookies
    proxy.zoom.emulator.token_endpoint_mode = "ok"
    async with proxy.client.get(f"{proxy.url}/api/users/me") as response:
        assert response.status == 200


async def test_token_endpoint_nonsense_is_502(signed_in: Proxy) -> None:
    signed_in.zoom.emulator.expire_access_tokens()
    signed_in.zoom.emulator.token_endpoint_mode = "garbage"
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 502
        assert (await response.json())["error"] == "token_endpoint_invalid"


async def test_a_failed_proactive_refresh_forwards_with_the_still_valid_token(proxy: Proxy) -> None:
    cookie = await sign_in_with_expiring_token(proxy)
    proxy.zoom.emulator.token_endpoint_mode = "down"
    assert (await get_me(proxy, cookie)).status == 200


async def test_concurrent_requests_share_one_failing_token_call(signed_in: Proxy) -> None:
    emulator = signed_in.zoom.emulator
    cookie = signed_in.cookie_header()
    emulator.expire_access_tokens()
    emulator.token_endpoint_mode = "slow"
    calls_before = emulator.counters["token_requests"]
    waiting = [asyncio.create_task(get_me(signed_in, cookie)) for _ in range(10)]
    await emulator.wait_for_stalled_token_requests(1)
    # Every request has been refused by Zoom and now waits on the one refresh.
    await asyncio.wait_for(emulator.wait_for_counter("api_401", 10), timeout=10)
    emulator.token_endpoint_mode = "down"
    responses = await asyncio.gather(*waiting)
    assert [r.status for r in responses] == [503] * 10
    assert emulator.counters["token_requests"] - calls_before == 1


async def test_the_replay_limit_is_the_configured_one_not_aiohttps(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(upstream={"max_replay_body": 3 * 1024 * 1024})
    await proxy.sign_in()
    proxy.zoom.emulator.expire_access_tokens()
    body = b"z" * (2 * 1024 * 1024)
    async with proxy.client.put(f"{proxy.url}/api/_test/upload", data=io.BytesIO(body)) as response:
        assert response.status == 200
        assert (await response.json())["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1


async def test_refreshed_tokens_reach_the_client_even_when_the_answer_is_an_error(
    make_proxy: ProxyFactory,
) -> None:
    healthy = await make_proxy()
    cookie = await sign_in_with_expiring_token(healthy)
    dead_api = await make_proxy(zoom={"api_base_url": f"http://127.0.0.1:{unused_port()}/v2"})
    broken = await get_me(dead_api, cookie)
    assert broken.status == 502
    refreshed = set_session_cookie(broken)
    assert refreshed
    assert (await get_me(healthy, f"zoom_proxy={refreshed}")).status == 200
    assert healthy.zoom.emulator.counters["refresh_rejected"] == 0


async def test_a_chunked_body_over_the_replay_limit_is_not_replayed(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(upstream={"max_replay_body": 1000})
    await proxy.sign_in()
    proxy.zoom.emulator.expire_access_tokens()

    async def chunked() -> object:
        for _ in range(4):
            yield b"c" * 600

    async with proxy.client.put(f"{proxy.url}/api/_test/upload", data=chunked()) as response:
        assert response.status == 401
        assert set_session_cookie(response)
    assert proxy.zoom.emulator.counters["api_401"] == 1


async def test_an_expired_session_cookie_is_signed_out(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(session={"max_age": 60})
    await proxy.sign_in()
    name, value = proxy.cookie_header().split("=", 1)
    plain = Fernet(SESSION_KEY).decrypt(value + "=" * (-len(value) % 4))
    stale = Fernet(SESSION_KEY).encrypt_at_time(plain, int(time.time()) - 120)
    assert (await get_me(proxy, f"{name}={stale.decode()}")).status == 401
