"""``session.store: redis`` without a Redis round trip per request: a replica holds the
sessions it has read while Redis tracks their keys, and drops one the moment Redis says
it changed (issue 18). Refreshes and deletions still reach every replica; logout's is
``test_redis.py::test_logout_on_one_replica_ends_the_session_on_every_replica``, and
deauthorization's ``test_deauthorization.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from proxy.redis.client import connect
from tests.helpers.proxies import Proxy, ProxyFactory, following, get_me, replicas

pytestmark = pytest.mark.both_transports


async def gets(redis: Redis) -> int:
    """GET commands Redis has run so far."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def signed_in_on_two_replicas(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> tuple[Proxy, Proxy, str]:
    """Two replicas on one Redis, each following its session keys, and a session begun
    on the first: its cookie."""
    a, b = await replicas(make_proxy, redis_section, store="redis")
    await following(a, b)
    await a.sign_in()
    return a, b, a.cookie_header()


@pytest.fixture
async def redis(redis_section: dict[str, str]) -> AsyncIterator[Redis]:
    client = connect(redis_section["url"])
    yield client
    await client.aclose()


async def test_a_session_read_once_is_served_without_asking_redis_again(
    make_proxy: ProxyFactory, redis_section: dict[str, str], redis: Redis
) -> None:
    a, _, cookie = await signed_in_on_two_replicas(make_proxy, redis_section)
    assert (await get_me(a, cookie)).status == 200
    before = await gets(redis)
    for _ in range(20):
        assert (await get_me(a, cookie)).status == 200
    assert await gets(redis) == before


async def test_a_refresh_on_one_replica_reaches_what_the_other_holds(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    """B holds the session; A refreshes it: B's next request carries the new token."""
    a, b, cookie = await signed_in_on_two_replicas(make_proxy, redis_section)
    emulator = a.zoom.emulator
    assert (await get_me(b, cookie)).status == 200
    emulator.expire_access_tokens()
    assert (await get_me(a, cookie)).status == 200  # Zoom's 401, a refresh, a replay
    assert emulator.counters["refresh_ok"] == 1
    refused = emulator.counters["api_401"]
    assert (await get_me(b, cookie)).status == 200
    assert emulator.counters["refresh_ok"] == 1  # B did not refresh again: it saw A's
    assert emulator.counters["api_401"] == refused  # and sent the new token at once


async def test_a_flush_of_redis_signs_out_what_a_replica_holds(
    make_proxy: ProxyFactory, redis_section: dict[str, str], redis: Redis
) -> None:
    a, _, cookie = await signed_in_on_two_replicas(make_proxy, redis_section)
    assert (await get_me(a, cookie)).status == 200
    for key in await redis.keys(f"{redis_section['key_prefix']}session:*"):
        await redis.delete(key)  # as an operator's cleanup would
    assert (await get_me(a, cookie)).status == 401
