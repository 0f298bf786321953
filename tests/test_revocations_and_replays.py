"""The two memories behind webhooks, on their own: revocations (who removed the app,
since when) and replays (which events were handled), each with a clock of its own."""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import EventNotDelivered
from proxy.session.revocations import Revocations
from proxy.webhooks.replays import Replays
from tests.helpers.clock import Clock


async def test_a_revocation_ends_sessions_begun_at_or_before_it_only() -> None:
    revocations = Revocations(keep_for=3600, clock=Clock(1_000_000.0))
    await revocations.revoke("u1", 999_990.0)
    assert revocations.revoked("u1", 999_980.0)
    assert revocations.revoked("u1", 999_990.0)
    assert not revocations.revoked("u1", 999_990.5)
    assert not revocations.revoked("u2", 0.0)


async def test_a_later_revocation_of_the_same_user_wins_and_an_earlier_one_does_not_undo_it() -> (
    None
):
    revocations = Revocations(keep_for=3600, clock=Clock(1_000_000.0))
    await revocations.revoke("u1", 999_990.0)
    await revocations.revoke("u1", 999_900.0)
    assert revocations.revoked("u1", 999_950.0)


async def test_a_revocation_older_than_any_live_session_is_not_kept() -> None:
    clock = Clock(1_000_000.0)
    revocations = Revocations(keep_for=60, clock=clock)
    await revocations.revoke("u1", clock.now - 61)
    assert not revocations.revoked("u1", 0.0)


async def test_an_answered_event_is_not_handled_again_until_it_is_forgotten() -> None:
    clock = Clock(1_000_000.0)
    replays = Replays(remember_for=600, clock=clock)
    handled: list[str] = []

    async def handle() -> None:
        handled.append("once")

    assert await replays.once("sig", handle)
    assert not await replays.once("sig", handle)
    clock.now += 601  # by now its timestamp is stale anyway
    assert await replays.once("sig", handle)
    assert handled == ["once", "once"]


async def test_a_failed_event_is_handled_afresh_and_copies_meanwhile_share_the_failure() -> None:
    replays = Replays(remember_for=600, clock=Clock(1_000_000.0))
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        raise EventNotDelivered()

    first = asyncio.ensure_future(replays.once("sig", failing))
    copy = asyncio.ensure_future(replays.once("sig", failing))
    await started.wait()  # both have asked by now: the handling runs after them
    release.set()
    for waiting in (first, copy):
        with pytest.raises(EventNotDelivered):
            await waiting
    assert calls == 1

    async def succeeding() -> None:
        nonlocal calls
        calls += 1

    assert await replays.once("sig", succeeding)  # Zoom's redelivery
    assert calls == 2


async def test_a_copy_whose_sender_leaves_does_not_cancel_the_handling() -> None:
    replays = Replays(remember_for=600, clock=Clock(1_000_000.0))
    started, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handle() -> None:
        started.set()
        await release.wait()
        done.set()

    first = asyncio.ensure_future(replays.once("sig", handle))
    await started.wait()
    first.cancel()  # Zoom gave up waiting on this delivery
    release.set()
    await asyncio.wait_for(done.wait(), timeout=5)
    assert not await replays.once("sig", handle)  # it was handled, and answered
