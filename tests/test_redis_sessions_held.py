"""``session.store: redis`` without a Redis round trip per request: a replica holds the
sessions it has read while Redis tracks their keys, and drops one the moment Redis says
it changed (issue 18). Refreshes and deletions still reach every replica; logout's is
``test_redis.py::test_logout_on_one_replica_ends_the_session_on_every_replica``, and
deauthorization's ``test_deauthorization.py``."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from proxy.redis.client import connect
from tests.helpers.processes import TIMEOUT
from tests.helpers.proxies import Proxy, ProxyFactory, following, get_me, replicas

pytestmark = pytest.mark.both_transports


async def calls(redis: Redis, command: str = "get") -> int:
    """How often Redis has run ``command`` so far (refused calls not counted)."""
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


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
    before = await calls(redis)
    for _ in range(20):
        assert (await get_me(a, cookie)).status == 200
    assert await calls(redis) == before


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


UserMaker = Callable[[str], Awaitable[tuple[str, str]]]


@pytest.fixture
async def acl_user(redis: Redis, redis_section: dict[str, str]) -> AsyncIterator[UserMaker]:
    """Makes a Redis user with the given ACL rules: its name and its ``redis.url``."""
    made: list[str] = []

    async def make(rules: str) -> tuple[str, str]:
        name, password = f"test-{secrets.token_hex(4)}", secrets.token_hex(8)
        acl = ("ACL", "SETUSER", name, "on", f">{password}", *rules.split())
        await redis.execute_command(*acl)  # type: ignore[no-untyped-call]
        made.append(name)
        return name, redis_section["url"].replace("redis://", f"redis://{name}:{password}@", 1)

    yield make
    for name in made:
        await redis.acl_deluser(name)


async def refusals(redis: Redis, user: str) -> int:
    """Commands Redis has refused ``user`` (its ACL log merges repeats into a count)."""
    entries = await redis.acl_log()
    return sum(int(str(entry["count"])) for entry in entries if entry["username"] == user)


async def until(redis_says: Callable[[], Awaitable[bool]]) -> None:
    """Until ``redis_says`` so (at most TIMEOUT): Redis's own counters, which no event of
    the proxy's reports, so they are asked again as they move."""
    async with asyncio.timeout(TIMEOUT):
        while not await redis_says():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def at_least(count: Awaitable[int], least: int) -> bool:
    return await count >= least


async def test_a_user_refused_the_tracking_commands_is_warned_once_and_still_served(
    make_proxy: ProxyFactory,
    redis_section: dict[str, str],
    redis: Redis,
    acl_user: UserMaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, url = await acl_user("~* &* +@all -client -subscribe")
    with caplog.at_level(logging.WARNING, logger="proxy.redis.tracking"):
        proxy = await make_proxy(session={"store": "redis"}, redis={**redis_section, "url": url})
        await proxy.sign_in()
        cookie = proxy.cookie_header()
        await until(lambda: at_least(refusals(redis, user), 2))  # it tried again
        before = await calls(redis)
        assert (await get_me(proxy, cookie)).status == 200
        assert await calls(redis) > before  # read from Redis: nothing may be held
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "+client|tracking" in warnings[0]


async def test_the_commands_the_warning_names_are_enough_to_hold_sessions(
    make_proxy: ProxyFactory, redis_section: dict[str, str], redis: Redis, acl_user: UserMaker
) -> None:
    user, url = await acl_user(
        "~* resetchannels +@all -client -subscribe +client|setname +client|list"
        " +client|tracking +client|trackinginfo +subscribe &__redis__:invalidate"
    )
    proxy = await make_proxy(session={"store": "redis"}, redis={**redis_section, "url": url})
    async with asyncio.timeout(TIMEOUT):
        await following(proxy)
    await proxy.sign_in()
    cookie = proxy.cookie_header()
    assert (await get_me(proxy, cookie)).status == 200
    before = await calls(redis)
    assert (await get_me(proxy, cookie)).status == 200
    assert await calls(redis) == before
    checked = await calls(redis, "client|trackinginfo") + 1  # its tracking checked, too
    await until(lambda: at_least(calls(redis, "client|trackinginfo"), checked))
    assert await refusals(redis, user) == 0
