"""Graceful shutdown: after SIGTERM, keep serving, report not-ready, drain, then stop.

A load balancer needs a moment to notice that a replica is going away. Until
``listen.shutdown_timeout`` runs out or the last request finishes, the proxy keeps
answering, but ``/readyz`` says 503 so no new traffic is routed to it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web


class Lifecycle:
    """In-flight requests and whether the process is draining."""

    def __init__(self) -> None:
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self) -> None:
        """Report not-ready from now on, and return once no request is in flight."""
        self.draining = True
        await self._idle.wait()

    def enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
