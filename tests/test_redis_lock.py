"""RedisLock and SharedStore against a real redis-server: ownership, expiry, bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import unused_port

from proxy.errors import RefreshBusy, SessionStoreUnavailable
from proxy.redis.client import SharedStore, connect
from proxy.redis.lock import RedisLock
from tests.helpers.stores import CountingStore


@pytest.fixture
async def store(redis_section: dict[str, str]) -> AsyncIterator[CountingStore]:
    client = connect(redis_section["url"])
    yield CountingStore(client, prefix=redis_section["key_prefix"])
    await client.aclose()


@pytest.fixture
async def dead_store() -> AsyncIterator[SharedStore]:
    client = connect(f"redis://127.0.0.1:{unused_port()}/0")
    yield SharedStore(client, prefix="dead:")
    await client.aclose()


def lock(store: SharedStore, *, ttl: float = 10, wait: float = 10) -> RedisLock:
    return RedisLock(store, store.key("lock", "x"), ttl=ttl, wait=wait)


async def test_a_free_lock_is_taken_at_once_and_holds_its_owner(store: CountingStore) -> None:
    first = lock(store)
    assert await first.acquire() is False
    assert await store.get(first.key) == first.owner


async def test_a_held_lock_is_refused_to_another_owner(store: CountingStore) -> None:
    first, second = lock(store), lock(store)
    await first.acquire()
    assert await second.try_acquire() is False
    assert await store.get(first.key) == first.owner


async def test_only_the_owner_releases_the_lock(store: CountingStore) -> None:
    first, second = lock(store), lock(store)
    await first.acquire()
    assert await second.release() is False
    assert await store.get(first.key) == first.owner
    assert await first.release() is True
    assert await store.get(first.key) is None


async def test_a_lock_expires_by_itself(store: CountingStore) -> None:
    first, second = lock(store, ttl=0.2), lock(store)
    await first.acquire()
    await asyncio.sleep(0.3)
    assert await second.try_acquire() is True


async def test_an_expired_owner_cannot_release_the_next_owners_lock(store: CountingStore) -> None:
    first, second = lock(store, ttl=0.1), lock(store)
    await first.acquire()
    await asyncio.sleep(0.2)
    await second.acquire()
    assert await first.release() is False
    assert await store.get(second.key) == second.owner


async def test_a_waiter_takes_the_lock_soon_after_its_release(store: CountingStore) -> None:
    first, second = lock(store), lock(store)
    await first.acquire()
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await first.release()
    released = time.monotonic()
    assert await asyncio.wait_for(waiting, 2) is True
    assert time.monotonic() - released < 0.3
    assert await store.get(second.key) == second.owner


async def test_waiting_is_bounded_and_polls_rather_than_spins(store: CountingStore) -> None:
    holder, waiter = lock(store), lock(store, wait=0.5)
    await holder.acquire()
    store.attempts = 0
    started = time.monotonic()
    with pytest.raises(RefreshBusy):
        await waiter.acquire()
    assert 0.5 <= time.monotonic() - started < 1.5
    assert 3 <= store.attempts <= 25


async def test_a_waiter_takes_over_the_lock_of_an_owner_that_died(store: CountingStore) -> None:
    crashed, waiter = lock(store, ttl=0.3), lock(store, wait=5)
    await crashed.acquire()
    assert await asyncio.wait_for(waiter.acquire(), 2) is True


async def test_unreachable_redis_is_session_store_unavailable_at_once(
    dead_store: SharedStore,
) -> None:
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable):
        await lock(dead_store).acquire()
    assert time.monotonic() - started < 3
    assert dead_store.reachable is False


async def test_values_expire_after_their_ttl(store: CountingStore) -> None:
    await store.set_many([(store.key("a"), b"1", 0.1), (store.key("b"), b"2", 10)])
    assert await store.get_many(store.key("a"), store.key("b")) == [b"1", b"2"]
    await asyncio.sleep(0.2)
    assert await store.get_many(store.key("a"), store.key("b")) == [None, b"2"]
