"""Refresher on its own: single flight, shared failure, rotation grace, no lost successor."""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import RefreshRejected, TokenEndpointUnavailable
from proxy.tokens.refresh import Refresher
from tests.helpers.clock import Clock
from tests.helpers.tokens import FakeZoom, tokens


async def test_concurrent_refreshes_of_one_token_make_one_call() -> None:
    zoom = FakeZoom()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    expired = tokens("a", expires_in=-1)
    waiters = [asyncio.create_task(refresher.fresh(expired)) for _ in range(25)]
    await zoom.entered.wait()
    zoom.release.set()
    results = await asyncio.gather(*waiters)
    assert zoom.calls == ["refresh-a"]
    assert {r.refresh_token for r in results} == {"refresh-refresh-a+1"}


async def test_a_failed_refresh_answers_every_waiter_once() -> None:
    zoom = FakeZoom()
    zoom.error = RefreshRejected()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    expired = tokens("a", expires_in=-1)
    waiters = [asyncio.create_task(refresher.fresh(expired)) for _ in range(10)]
    await zoom.entered.wait()
    zoom.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert zoom.calls == ["refresh-a"]
    assert all(isinstance(r, RefreshRejected) for r in results)


async def test_superseded_tokens_map_to_their_successor_within_the_grace() -> None:
    zoom = FakeZoom()
    zoom.release.set()
    clock = Clock()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60, clock=clock)
    old = tokens("a", expires_in=-1)
    new = await refresher.fresh(old)
    clock.now += 59
    assert await refresher.fresh(old) == new
    assert zoom.calls == ["refresh-a"]


async def test_superseded_tokens_refresh_again_after_the_grace() -> None:
    zoom = FakeZoom()
    zoom.release.set()
    clock = Clock()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60, clock=clock)
    old = tokens("a", expires_in=-1)
    await refresher.fresh(old)
    clock.now += 61
    await refresher.fresh(old)
    assert zoom.calls == ["refresh-a", "refresh-a"]


async def test_successor_chains_are_followed_to_the_newest() -> None:
    zoom = FakeZoom()
    zoom.release.set()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    first = tokens("a")
    second = await refresher.after_401(first)
    third = await refresher.after_401(second)
    assert refresher.successor(first) == third


async def test_after_401_uses_a_successor_instead_of_refreshing_again() -> None:
    zoom = FakeZoom()
    zoom.release.set()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    rejected = tokens("a")
    first = await refresher.after_401(rejected)
    second = await refresher.after_401(rejected)
    assert first == second
    assert zoom.calls == ["refresh-a"]


async def test_a_cancelled_waiter_does_not_cancel_the_refresh() -> None:
    zoom = FakeZoom()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    old = tokens("a", expires_in=-1)
    leaving = asyncio.create_task(refresher.fresh(old))
    await zoom.entered.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    zoom.release.set()
    await refresher.close()
    assert refresher.successor(old).refresh_token == "refresh-refresh-a+1"


async def test_endpoint_down_with_a_valid_token_keeps_the_current_token() -> None:
    zoom = FakeZoom()
    zoom.error = TokenEndpointUnavailable()
    zoom.release.set()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    expiring = tokens("a", expires_in=30)
    assert await refresher.fresh(expiring) == expiring


async def test_endpoint_down_with_an_expired_token_is_unavailable() -> None:
    zoom = FakeZoom()
    zoom.error = TokenEndpointUnavailable()
    zoom.release.set()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    with pytest.raises(TokenEndpointUnavailable):
        await refresher.fresh(tokens("a", expires_in=-1))


async def test_tokens_far_from_expiry_are_not_refreshed() -> None:
    zoom = FakeZoom()
    refresher = Refresher(zoom.refresh, margin=60, rotation_grace=60)
    current = tokens("a", expires_in=3600)
    assert await refresher.fresh(current) == current
    assert zoom.calls == []
