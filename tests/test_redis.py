"""Replicas behind a load balancer, end to end: two proxies, one Redis, one emulated Zoom.

Each proxy is a real server on loopback with the same session keys, like two pods of
one Deployment; requests carrying one cookie alternate between them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from proxy.redis.client import COMMAND_TIMEOUT, connect
from proxy.redis.tracking import CHECK_INTERVAL
from tests.helpers.proxies import (
    SESSION_KEY,
    Proxy,
    ProxyFactory,
    fetch_with_cookie,
    following,
    get_me,
    replicas,
    set_session_cookie,
    sign_in_with_expiring_token,
)
from tests.helpers.redisserver import RedisServer, available

#: What a dead Redis may cost a request: a refused connection answers at once, a frozen
#: server after the command timeout and one retry (about 2 s).
BOUND = 4.0


def alternating(a: Proxy, b: Proxy, count: int) -> list[Proxy]:
    return [(a, b)[i % 2] for i in range(count)]


def session_id(cookie: str) -> str:
    """The server-side session id inside a ``store: redis`` cookie."""
    value = cookie.partition("=")[2]
    sealed = (value + "=" * (-len(value) % 4)).encode()
    data = json.loads(Fernet(SESSION_KEY.encode()).decrypt(sealed))
    session_id: str = data["session"]["sid"]
    return session_id


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, persisting every write (so it survives a kill)."""
    if not available():
        pytest.skip("redis-server is missing: install Debian's redis-server package")
    server = RedisServer(directory=tmp_path)
    server.start()
    yield server
    server.resume()
    server.stop()


@pytest.fixture
async def redis_client(redis_section: dict[str, str]) -> AsyncIterator[Redis]:
    client = connect(redis_section["url"])
    yield client
    await client.aclose()


# === one refresh for many replicas =====================================================


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_50_concurrent_requests_over_two_replicas_refresh_once(
    make_proxy: ProxyFactory, redis_section: dict[str, str], store: str
) -> None:
    a, b = await replicas(make_proxy, redis_section, store=store)
    await a.sign_in()
    cookie = a.cookie_header()
    emulator = a.zoom.emulator
    emulator.expire_access_tokens()
    responses = await asyncio.gather(*(get_me(p, cookie) for p in alternating(a, b, 50)))
    assert [r.status for r in responses] == [200] * 50
    assert emulator.counters["refresh_ok"] == 1
    assert emulator.counters["refresh_rejected"] == 0


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_50_concurrent_requests_refresh_once_before_expiry(
    make_proxy: ProxyFactory, redis_section: dict[str, str], store: str
) -> None:
    a, b = await replicas(make_proxy, redis_section, store=store)
    cookie = await sign_in_with_expiring_token(a)
    responses = await asyncio.gather(*(get_me(p, cookie) for p in alternating(a, b, 50)))
    assert [r.status for r in responses] == [200] * 50
    assert a.zoom.emulator.counters["refresh_ok"] == 1
    assert a.zoom.emulator.counters["api_401"] == 0


async def test_without_redis_two_replicas_race_and_log_the_user_out(
    make_proxy: ProxyFactory,
) -> None:
    """What the shared lock prevents: each replica refreshes, and Zoom refuses one."""
    a, b = await make_proxy(), await make_proxy()
    await a.sign_in()
    cookie = a.cookie_header()
    a.zoom.emulator.expire_access_tokens()
    a.zoom.emulator.token_endpoint_mode = "slow"
    racing = [asyncio.create_task(get_me(p, cookie)) for p in (a, b)]
    await a.zoom.emulator.wait_for_stalled_token_requests(2)
    a.zoom.emulator.token_endpoint_mode = "ok"
    statuses = sorted(r.status for r in await asyncio.gather(*racing))
    assert statuses == [200, 401]
    assert a.zoom.emulator.counters["refresh_rejected"] == 1


# === store: cookie + redis: the shared rotation grace ==================================


async def test_a_late_superseded_cookie_at_the_other_replica_is_served(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, b = await replicas(make_proxy, redis_section)
    await a.sign_in()
    superseded = a.cookie_header()
    a.zoom.emulator.expire_access_tokens()
    assert (await get_me(a, superseded)).status == 200
    late = await get_me(b, superseded)
    assert late.status == 200
    assert set_session_cookie(late)
    assert a.zoom.emulator.counters["refresh_ok"] == 1
    assert a.zoom.emulator.counters["refresh_rejected"] == 0


async def test_without_a_grace_a_late_superseded_cookie_at_the_other_replica_is_signed_out(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, b = await replicas(make_proxy, redis_section, refresh={"rotation_grace": 0})
    await a.sign_in()
    superseded = a.cookie_header()
    a.zoom.emulator.expire_access_tokens()
    assert (await get_me(a, superseded)).status == 200
    assert (await get_me(b, superseded)).status == 401
    assert a.zoom.emulator.counters["refresh_rejected"] == 1


# === store: redis: server-side sessions ================================================


async def test_the_cookie_is_a_small_opaque_id_of_at_least_128_bits(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, _ = await replicas(make_proxy, redis_section, store="redis")
    await a.sign_in()
    cookie = a.cookie_header()
    assert list(a.session_cookies()) == ["zoom_proxy"]
    assert len(cookie) < 300
    assert len(session_id(cookie)) >= 22  # url-safe base64: 6 bits a character


async def test_tokens_in_redis_are_encrypted_and_expire_after_max_age(
    make_proxy: ProxyFactory, redis_section: dict[str, str], redis_client: Redis
) -> None:
    a, _ = await replicas(make_proxy, redis_section, store="redis", session={"max_age": 1000})
    await a.sign_in()
    key = f"{redis_section['key_prefix']}session:{session_id(a.cookie_header())}"
    value = await redis_client.get(key)
    assert value is not None
    assert not any(token.encode() in value for token in a.zoom.emulator.issued_tokens())
    assert 990_000 < await redis_client.pttl(key) <= 1_000_000


async def test_a_refresh_keeps_the_cookie_and_a_copy_lives_on(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    """curl with a read-only jar: the same cookie works refresh after refresh, with no
    rotation grace to lean on, because the id never changes."""
    a, b = await replicas(make_proxy, redis_section, store="redis", refresh={"rotation_grace": 0})
    await a.sign_in()
    copied = a.cookie_header()
    for round_, proxy in enumerate((a, b, a, b), start=1):
        a.zoom.emulator.expire_access_tokens()
        response = await get_me(proxy, copied)
        assert response.status == 200
        assert "zoom_proxy" not in response.cookies
        assert a.zoom.emulator.counters["refresh_ok"] == round_
    assert a.zoom.emulator.counters["refresh_rejected"] == 0


async def test_logout_on_one_replica_ends_the_session_on_every_replica(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, b = await replicas(make_proxy, redis_section, store="redis")
    await following(a, b)
    await a.sign_in()
    copied = a.cookie_header()
    for _ in range(2):  # the second from what B holds in memory
        assert (await get_me(b, copied)).status == 200
    async with a.client.post(f"{a.url}/auth/logout") as response:
        assert response.status == 204
    asked_zoom = len(a.zoom.emulator.api_requests)
    response, body = await fetch_with_cookie(f"{b.url}/api/users/me", copied)
    assert response.status == 401
    assert json.loads(body)["error"] == "unauthenticated"
    assert len(a.zoom.emulator.api_requests) == asked_zoom, "B asked Zoom: the session lived on"


async def test_each_sign_in_mints_a_new_session_id(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, _ = await replicas(make_proxy, redis_section, store="redis")
    await a.sign_in()
    first = session_id(a.cookie_header())
    await a.sign_in()
    assert session_id(a.cookie_header()) != first


async def test_a_forged_session_id_is_signed_out(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, _ = await replicas(make_proxy, redis_section, store="redis")
    await a.sign_in()
    known = session_id(a.cookie_header())
    forged = Fernet(Fernet.generate_key()).encrypt(
        json.dumps({"created": int(time.time()), "session": {"sid": known}}).encode()
    )
    response = await get_me(a, f"zoom_proxy={forged.decode().rstrip('=')}")
    assert response.status == 401


async def test_a_session_rejected_by_zoom_is_deleted_from_redis(
    make_proxy: ProxyFactory, redis_section: dict[str, str], redis_client: Redis
) -> None:
    a, b = await replicas(make_proxy, redis_section, store="redis")
    await a.sign_in()
    cookie = a.cookie_header()
    a.zoom.emulator.revoke_all()
    assert (await get_me(a, cookie)).status == 401
    key = f"{redis_section['key_prefix']}session:{session_id(cookie)}"
    assert await redis_client.get(key) is None
    assert (await get_me(b, cookie)).status == 401
    assert a.zoom.emulator.counters["refresh_rejected"] == 1


async def test_the_page_and_auth_me_read_the_session_from_redis(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, b = await replicas(make_proxy, redis_section, store="redis")
    await a.sign_in()
    response, body = await fetch_with_cookie(f"{b.url}/auth/me", a.cookie_header())
    assert response.status == 200
    assert json.loads(body)["user"]["email"] == a.zoom.emulator.user.email
    _, page = await fetch_with_cookie(f"{b.url}/", a.cookie_header())
    assert a.zoom.emulator.user.email in page


# === Redis down =========================================================================


async def timed_get_me(proxy: Proxy, cookie: str) -> tuple[int, str, float]:
    started = time.monotonic()
    response, body = await fetch_with_cookie(f"{proxy.url}/api/users/me", cookie)
    return response.status, body, time.monotonic() - started


async def test_redis_killed_mid_traffic_gives_bounded_503s_then_recovers(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    a, b = await replicas(make_proxy, {"url": own_redis.url}, store="redis")
    await a.sign_in()
    cookie = a.cookie_header()
    answers: list[tuple[float, float, int, str]] = []  # started, finished, status, body
    stop = asyncio.Event()

    async def client(proxy: Proxy) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response, body = await fetch_with_cookie(f"{proxy.url}/api/users/me", cookie)
            answers.append((started, time.monotonic(), response.status, body))
            await asyncio.sleep(0.01)

    clients = [asyncio.create_task(client(p)) for p in alternating(a, b, 6)]
    await asyncio.sleep(0.5)
    killed = time.monotonic()
    own_redis.stop()
    await asyncio.sleep(1.5)
    own_redis.start()
    restarted = time.monotonic()
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*clients)

    assert {status for _, _, status, _ in answers} == {200, 503}
    assert all(status == 200 for _, finished, status, _ in answers if finished < killed)
    assert all(status == 200 for started, _, status, _ in answers if started > restarted + 0.5)
    failures = [(end - start, body) for start, end, status, body in answers if status == 503]
    assert max(took for took, _ in failures) < BOUND
    assert all(json.loads(body)["error"] == "session_store_unavailable" for _, body in failures)
    for proxy in (a, b):
        async with proxy.client.get(f"{proxy.url}/healthz") as response:
            assert response.status == 200


async def test_a_frozen_redis_answers_503_within_the_bound_and_recovers(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    """A session this replica holds serves on until the replica notices that Redis no
    longer answers (nothing can change in a frozen Redis meanwhile); then 503."""
    a, _ = await replicas(make_proxy, {"url": own_redis.url}, store="redis")
    await a.sign_in()
    cookie = a.cookie_header()
    own_redis.pause()
    async with asyncio.timeout(BOUND + 3 * CHECK_INTERVAL + COMMAND_TIMEOUT):
        while (answer := await timed_get_me(a, cookie))[0] == 200:
            pass
    status, body, took = answer
    assert status == 503
    assert json.loads(body)["error"] == "session_store_unavailable"
    assert took < BOUND
    own_redis.resume()
    assert (await timed_get_me(a, cookie))[0] == 200


async def test_redis_down_with_cookies_fails_only_the_refresh_and_keeps_the_session(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    a, b = await replicas(make_proxy, {"url": own_redis.url})
    await a.sign_in()
    cookie = a.cookie_header()
    own_redis.stop()
    assert (await timed_get_me(b, cookie))[0] == 200  # a valid token needs no Redis
    a.zoom.emulator.expire_access_tokens()
    status, body, took = await timed_get_me(b, cookie)
    assert (status, json.loads(body)["error"]) == (503, "session_store_unavailable")
    assert took < BOUND
    assert a.zoom.emulator.counters["refresh_ok"] == 0
    own_redis.start()
    assert (await timed_get_me(a, cookie))[0] == 200
    assert a.zoom.emulator.counters["refresh_ok"] == 1


async def test_redis_down_with_a_still_valid_token_forwards_with_it(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    a, _ = await replicas(make_proxy, {"url": own_redis.url})
    cookie = await sign_in_with_expiring_token(a)
    own_redis.stop()
    assert (await timed_get_me(a, cookie))[0] == 200
    assert a.zoom.emulator.counters["refresh_ok"] == 0


async def test_on_unavailable_local_keeps_refreshing_while_redis_is_down(
    make_proxy: ProxyFactory, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await replicas(make_proxy, {"url": own_redis.url, "on_unavailable": "local"})
    await a.sign_in()
    own_redis.stop()
    emulator = a.zoom.emulator
    with caplog.at_level(logging.WARNING):
        for proxy in (a, b, a):
            emulator.expire_access_tokens()
            async with a.client.get(f"{proxy.url}/api/users/me") as response:
                assert response.status == 200
    assert emulator.counters["refresh_ok"] == 3
    warnings = [r for r in caplog.records if "without Redis" in r.getMessage()]
    assert [r.name for r in warnings] == ["proxy.tokens.coordination"] * 2  # once per replica
    own_redis.start()
    emulator.expire_access_tokens()
    async with a.client.get(f"{b.url}/api/users/me") as response:
        assert response.status == 200


async def test_sign_in_with_redis_down_is_503_and_leaves_no_token_behind(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    a, _ = await replicas(make_proxy, {"url": own_redis.url}, store="redis")
    own_redis.stop()
    async with a.client.get(f"{a.url}/auth/login") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "session_store_unavailable"
    assert a.zoom.emulator.counters["code_ok"] == 1
    assert a.zoom.emulator.counters["revoke"] == 1
    assert a.session_cookies() == {}


async def test_redis_down_is_logged_once_per_outage_and_its_return_noticed(
    make_proxy: ProxyFactory, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_proxy(session={"store": "redis"}, redis={"url": own_redis.url})
    await a.sign_in()
    cookie = a.cookie_header()
    own_redis.stop()
    with caplog.at_level(logging.INFO, logger="proxy.redis.client"):
        # The replica may serve what it holds until it has read that Redis is gone.
        async with asyncio.timeout(BOUND):
            while (await timed_get_me(a, cookie))[0] == 200:
                pass
        for _ in range(4):  # the fifth 503
            assert (await timed_get_me(a, cookie))[0] == 503
        own_redis.start()
        assert (await timed_get_me(a, cookie))[0] == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "proxy.redis.client"]
    assert len(messages) == 2
    assert "is unreachable" in messages[0]
    assert "answers again" in messages[1]
    async with a.client.get(f"{a.url}/metrics") as response:
        metrics = await response.text()
    [failures] = re.findall(r"^zoom_proxy_redis_failures_total (\S+)$", metrics, re.M)
    assert float(failures) >= 5  # the five requests', and any background poll's


# === passwords ==========================================================================


async def test_a_password_protected_redis_works_and_a_wrong_password_never_shows(
    make_proxy: ProxyFactory, tmp_path: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    if not available():
        pytest.skip("redis-server is missing: install Debian's redis-server package")
    server = RedisServer(password="s3cret-redis-pass")
    server.start()
    try:
        good, _ = await replicas(make_proxy, {"url": server.url}, store="redis")
        await good.sign_in()
        assert (await get_me(good, good.cookie_header())).status == 200
        wrong_url = server.url.replace("s3cret-redis-pass", "wr0ng-redis-pass")
        wrong, _ = await replicas(make_proxy, {"url": wrong_url}, store="redis")
        response, body = await fetch_with_cookie(f"{wrong.url}/api/users/me", good.cookie_header())
        assert response.status == 503
    finally:
        server.stop()
    assert "s3cret-redis-pass" not in all_logs.text
    assert "wr0ng-redis-pass" not in all_logs.text
    assert "s3cret-redis-pass" not in body


async def test_both_replicas_answer_health_probes_while_redis_is_down(
    make_proxy: ProxyFactory, own_redis: RedisServer
) -> None:
    own_redis.stop()
    a, _ = await replicas(make_proxy, {"url": own_redis.url}, store="redis")
    for path in ("/healthz", "/readyz"):
        async with aiohttp.ClientSession() as client, client.get(f"{a.url}{path}") as response:
            assert response.status == 200
