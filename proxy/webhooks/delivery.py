"""Verified events passed on to the app's backend (``webhooks.forward_to``), byte for
byte: Zoom gets its 200 only once the backend has answered 2xx in time, so that no event
is lost silently (any other outcome is a 502, and Zoom delivers the event again)."""

from __future__ import annotations

import asyncio
import logging

from yarl import URL

from proxy.errors import EventNotDelivered, ProxyError
from proxy.http.client import BodyBrokeOff, Pool

log = logging.getLogger(__name__)

#: Connections to the backend at once.
BACKEND_CONNECTIONS = 64


class Backend:
    """``POST forward_to`` for each event, over keep-alive connections."""

    def __init__(self, forward_to: str, *, timeout: float) -> None:
        url = URL(forward_to)
        self._target = url.raw_path_qs
        self._timeout = timeout
        self._pool = Pool(
            str(url.origin()),
            limit=BACKEND_CONNECTIONS,
            connect_timeout=timeout,
            read_timeout=timeout,
            buffer_limit=1 << 16,
        )

    async def deliver(self, body: bytes, headers: list[tuple[str, str]], event: str) -> None:
        """Hand the event over; :class:`EventNotDelivered` unless the backend took it."""
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._pool.request("POST", self._target, headers, body)
                try:
                    await response.read()
                finally:
                    response.release()
        except (TimeoutError, ProxyError, BodyBrokeOff, OSError) as exc:
            log.warning("webhook event %s: the backend did not take it (%s)", event, _why(exc))
            raise EventNotDelivered() from exc
        if not 200 <= response.status < 300:
            log.warning("webhook event %s: the backend answered %d", event, response.status)
            raise EventNotDelivered()

    def close(self) -> None:
        self._pool.close()


def _why(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer within webhooks.forward_timeout"
    return "unreachable, or its answer broke off"
