"""Write flow control (:mod:`proxy.http.flow`): pause, resume, drain, loss, and the
straight-through decision."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

import pytest

from proxy.http.flow import WriteFlow, keeps_up

#: How long anything that should happen at once may take before the test fails instead of hanging.
GUARD = 5.0


async def one_turn() -> None:
    """One turn of the event loop: a task just created runs up to its first wait."""
    await asyncio.sleep(0)


async def waiting_drain(flow: WriteFlow) -> asyncio.Task[None]:
    """A drain started and run up to where it waits (or ends)."""
    drain = asyncio.create_task(flow.drain())
    await one_turn()
    return drain


def test_a_drain_returns_at_once_while_the_other_side_keeps_up() -> None:
    drain = WriteFlow().drain()
    with pytest.raises(StopIteration):
        drain.send(None)  # ends at its first step: it never waits


async def test_a_drain_after_pause_waits() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    assert flow.paused
    assert not drain.done()
    drain.cancel()


async def test_resume_releases_a_waiting_drain() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    flow.resume()
    await asyncio.wait_for(drain, GUARD)
    assert not flow.paused


async def test_resume_releases_every_waiting_drain() -> None:
    flow = WriteFlow()
    flow.pause()
    drains = [await waiting_drain(flow) for _ in range(3)]
    flow.resume()
    await asyncio.wait_for(asyncio.gather(*drains), GUARD)


def test_a_drain_after_resume_returns_at_once() -> None:
    flow = WriteFlow()
    flow.pause()
    flow.resume()
    with pytest.raises(StopIteration):
        flow.drain().send(None)


async def test_a_cancelled_drain_leaves_the_others_waiting() -> None:
    flow = WriteFlow()
    flow.pause()
    cancelled, other = await waiting_drain(flow), await waiting_drain(flow)
    cancelled.cancel()
    await one_turn()
    assert cancelled.cancelled()
    assert not other.done()
    flow.resume()
    await asyncio.wait_for(other, GUARD)


async def test_loss_fails_a_waiting_drain() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    flow.lose()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(drain, GUARD)


async def test_loss_fails_a_waiting_drain_with_the_error_given() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    flow.lose(BrokenPipeError("gone"))
    with pytest.raises(BrokenPipeError):
        await asyncio.wait_for(drain, GUARD)


async def test_every_drain_after_loss_fails() -> None:
    flow = WriteFlow()
    flow.lose()
    assert flow.lost
    assert not flow.paused
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await flow.drain()


async def test_resume_with_an_error_fails_waiting_drains_and_unpauses() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    flow.resume(ConnectionResetError("the client has gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(drain, GUARD)
    assert not flow.paused
    assert not flow.lost


async def test_fail_fails_waiting_drains_and_stays_paused() -> None:
    flow = WriteFlow()
    flow.pause()
    drain = await waiting_drain(flow)
    flow.fail(TimeoutError())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(drain, GUARD)
    assert flow.paused
    again = await waiting_drain(flow)
    assert not again.done()
    flow.resume()
    await asyncio.wait_for(again, GUARD)


@pytest.mark.parametrize("end", ["lose", "fail"])
async def test_an_error_no_drain_is_left_to_raise_is_not_reported(end: str) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        flow = WriteFlow()
        flow.pause()
        drain = await waiting_drain(flow)
        drain.cancel()  # the only drain goes: nothing awaits what it waited for
        await one_turn()
        if end == "lose":
            flow.lose()
        else:
            flow.fail(TimeoutError())
        del drain
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


class Sink:
    """A transport as the straight-through decision sees one."""

    def __init__(self, buffered: int = 0, *, closing: bool = False) -> None:
        self.buffered = buffered
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


def test_a_sink_under_its_limit_keeps_up() -> None:
    assert keeps_up(cast(asyncio.Transport, Sink(buffered=99)), 100)


def test_a_sink_at_its_limit_does_not_keep_up() -> None:
    assert not keeps_up(cast(asyncio.Transport, Sink(buffered=100)), 100)


def test_a_closing_sink_does_not_keep_up() -> None:
    assert not keeps_up(cast(asyncio.Transport, Sink(closing=True)), 100)
