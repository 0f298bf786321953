"""SharedGrace: two Refreshers standing for two replicas, one real Redis, a fake Zoom."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from proxy.errors import (
    RefreshRejected,
    SessionStoreUnavailable,
    TokenEndpointUnavailable,
)
from proxy.redis.client import SharedStore, connect
from proxy.tokens.coordination import SharedGrace
from proxy.tokens.model import Tokens
from proxy.tokens.refresh import Refresher
from proxy.tokens.sealing import make_fernet
from tests.helpers.stores import CountingStore
from tests.helpers.tokens import FakeZoom, tokens

FERNET = make_fernet([Fernet.generate_key().decode()])


@dataclass
class Replica:
    """One replica's Refresher, with its own memory, and the outcomes it counted."""

    refresher: Refresher
    outcomes: list[str]

    async def fresh(self, current: Tokens) -> Tokens:
        return await self.refresher.fresh(current)

    async def after_401(self, rejected: Tokens) -> Tokens:
        return await self.refresher.after_401(rejected)


ReplicaFactory = Callable[..., Replica]


@pytest.fixture
async def redis(redis_section: dict[str, str]) -> AsyncIterator[Redis]:
    client = connect(redis_section["url"])
    yield client
    await client.aclose()


@pytest.fixture
async def replica(redis: Redis, redis_section: dict[str, str]) -> AsyncIterator[ReplicaFactory]:
    """Make a replica sharing the test's Redis (or the one at ``url``)."""
    clients: list[Redis] = []

    def make(zoom: FakeZoom, *, grace: float = 60, local: bool = False, url: str = "") -> Replica:
        client = redis
        if url:
            client = connect(url)
            clients.append(client)
        store = SharedStore(client, prefix=redis_section["key_prefix"])
        coordinator = SharedGrace(
            store, FERNET, rotation_grace=grace, lock_ttl=10, fall_back_locally=local
        )
        outcomes: list[str] = []
        refresher = Refresher(
            zoom.refresh,
            margin=60,
            rotation_grace=grace,
            coordinator=coordinator,
            on_outcome=outcomes.append,
        )
        return Replica(refresher, outcomes)

    yield make
    for client in clients:
        await client.aclose()


async def test_replicas_refreshing_one_token_at_once_call_zoom_once(
    replica: ReplicaFactory,
) -> None:
    zoom = FakeZoom()
    a, b = replica(zoom), replica(zoom)
    expired = tokens("a", expires_in=-1)
    waiters = [asyncio.create_task(r.fresh(expired)) for r in (a, b) for _ in range(10)]
    await zoom.entered.wait()
    await asyncio.sleep(0.2)  # b is now waiting on a's lock
    zoom.release.set()
    results = await asyncio.gather(*waiters)
    assert zoom.calls == ["refresh-a"]
    assert {r.refresh_token for r in results} == {"refresh-refresh-a+1"}
    assert sorted(a.outcomes + b.outcomes) == ["ok", "shared"]


async def test_a_superseded_token_at_another_replica_gets_the_successor(
    replica: ReplicaFactory,
) -> None:
    zoom = FakeZoom()
    zoom.release.set()
    a, b = replica(zoom), replica(zoom)
    old = tokens("a")
    new = await a.after_401(old)
    assert await b.after_401(old) == new
    assert zoom.calls == ["refresh-a"]


async def test_without_a_grace_another_replica_refreshes_the_superseded_token(
    replica: ReplicaFactory,
) -> None:
    zoom = FakeZoom()
    zoom.release.set()
    a, b = replica(zoom, grace=0), replica(zoom, grace=0)
    old = tokens("a")
    await a.after_401(old)
    await b.after_401(old)
    assert zoom.calls == ["refresh-a", "refresh-a"]


@pytest.mark.parametrize("error", [RefreshRejected, TokenEndpointUnavailable])
async def test_a_waiting_replica_takes_over_the_holders_failure(
    replica: ReplicaFactory, error: type[Exception]
) -> None:
    zoom = FakeZoom()
    zoom.error = error()
    a, b = replica(zoom), replica(zoom)
    expired = tokens("a", expires_in=-1)
    first = asyncio.create_task(a.fresh(expired))
    await zoom.entered.wait()
    second = asyncio.create_task(b.fresh(expired))
    await asyncio.sleep(0.2)
    zoom.release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [error, error]
    assert zoom.calls == ["refresh-a"]


async def test_stored_tokens_are_encrypted_and_keyed_by_a_hash(
    replica: ReplicaFactory, redis: Redis, redis_section: dict[str, str]
) -> None:
    zoom = FakeZoom()
    zoom.release.set()
    old = tokens("a")
    new = await replica(zoom).after_401(old)
    stored = {
        key: await redis.get(key)
        async for key in redis.scan_iter(redis_section["key_prefix"] + "*")
    }
    assert len(stored) == 2  # the grace and the hand-off to waiting replicas
    secrets = [old.refresh_token, old.access_token, new.refresh_token, new.access_token]
    for key, value in stored.items():
        assert value is not None
        assert not any(secret.encode() in key or secret.encode() in value for secret in secrets)


async def test_redis_down_fails_the_refresh_without_calling_zoom(replica: ReplicaFactory) -> None:
    zoom = FakeZoom()
    zoom.release.set()
    refresher = replica(zoom, url=f"redis://127.0.0.1:{unused_port()}/0")
    with pytest.raises(SessionStoreUnavailable):
        await refresher.after_401(tokens("a"))
    assert zoom.calls == []


async def test_redis_down_with_a_valid_token_forwards_with_it(replica: ReplicaFactory) -> None:
    zoom = FakeZoom()
    refresher = replica(zoom, url=f"redis://127.0.0.1:{unused_port()}/0")
    expiring = tokens("a", expires_in=30)
    assert await refresher.fresh(expiring) == expiring


async def test_on_unavailable_local_refreshes_alone_and_warns_once_per_outage(
    replica: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    zoom = FakeZoom()
    zoom.release.set()
    refresher = replica(zoom, local=True, url=f"redis://127.0.0.1:{unused_port()}/0")
    with caplog.at_level(logging.WARNING):
        await refresher.after_401(tokens("a"))
        await refresher.after_401(tokens("b"))
    assert zoom.calls == ["refresh-a", "refresh-b"]
    warnings = [r.getMessage() for r in caplog.records if "without Redis" in r.getMessage()]
    assert len(warnings) == 1


async def test_concurrent_requests_in_one_replica_make_one_round_to_redis(
    redis: Redis, redis_section: dict[str, str]
) -> None:
    store = CountingStore(redis, prefix=redis_section["key_prefix"])
    zoom = FakeZoom()
    refresher = Refresher(
        zoom.refresh,
        margin=60,
        rotation_grace=60,
        coordinator=SharedGrace(store, FERNET, rotation_grace=60, lock_ttl=10),
    )
    expired = tokens("a", expires_in=-1)
    waiters = [asyncio.create_task(refresher.fresh(expired)) for _ in range(25)]
    await zoom.entered.wait()
    zoom.release.set()
    await asyncio.gather(*waiters)
    assert store.attempts == 1
    assert zoom.calls == ["refresh-a"]
