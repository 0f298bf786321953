"""Redis's word on which keys under a prefix changed, so that a process may keep copies
of them (client-side caching, broadcast mode).

A subscriber connection listens on ``__redis__:invalidate``; a second connection turns
tracking on for the prefix and redirects its notifications there (``CLIENT TRACKING ON
REDIRECT <subscriber> BCAST PREFIX <prefix>``). Redis then sends every changed key
(or, on a flush, none: "all of them") to the subscriber, before it answers the write.

While this is not followed (starting, the subscriber's connection lost, the tracking
connection gone) nothing may be trusted: :attr:`Tracking.live` is false, and the
owner is told that every key may have changed. Copies are only ever dropped by what
Redis says or by losing track of it, never by a timer alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoPermissionError, RedisError

from proxy.redis.client import COMMAND_TIMEOUT, CONNECT_TIMEOUT

log = logging.getLogger(__name__)

INVALIDATIONS = "__redis__:invalidate"
#: Seconds between checks that tracking is still on (a tracking connection that Redis
#: closed ends the notifications without a word to the subscriber).
CHECK_INTERVAL = 0.5
#: Seconds before following again after losing track.
RETRY_INTERVAL = 1.0

#: Told the keys that changed, or ``None`` for "any of them".
OnChange = Callable[[list[str] | None], None]


class Tracking:
    """Follows changes to the keys under ``prefix`` in the Redis at ``url``."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Whether changes are followed right now."""
        return self._live.is_set()

    async def until_live(self) -> None:
        """Return once changes are followed."""
        await self._live.wait()

    async def start(self, on_change: OnChange) -> None:
        """Follow changes from now on, telling ``on_change``."""
        self._task = asyncio.ensure_future(self._follow(on_change))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, on_change: OnChange) -> None:
        refused = False
        while True:
            try:
                await self._follow_once(on_change)
            except NoPermissionError:
                # Correct without it, but every request then reads its session from
                # Redis: the operator should hear of it, once, not at each retry.
                if not refused:
                    log.warning(
                        "Redis refuses this user the commands that follow key changes"
                        " (CLIENT TRACKING, SUBSCRIBE), so every request reads its session"
                        " from Redis; allow them (ACL: +client|setname +client|list"
                        " +client|tracking +client|trackinginfo +subscribe &%s)",
                        INVALIDATIONS,
                    )
                refused = True
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                log.debug("stopped following Redis's key changes: %s", type(exc).__name__)
            finally:
                self._live.clear()
                on_change(None)
            await asyncio.sleep(RETRY_INTERVAL)

    async def _follow_once(self, on_change: OnChange) -> None:
        name = f"zoom-proxy-tracking-{secrets.token_hex(8)}"
        # RESP2: Redis sends a RESP3 client its notifications as pushes, not as the
        # messages of the channel it subscribed to.
        subscriber = Redis.from_url(
            self._url,
            protocol=2,
            client_name=name,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        # One connection of its own, never pooled: tracking lives as long as it does.
        pool = ConnectionPool.from_url(
            self._url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT
        )
        tracker = pool.connection_class(**pool.connection_kwargs)
        pubsub = subscriber.pubsub()
        try:
            await pubsub.subscribe(INVALIDATIONS)
            await tracker.connect()  # type: ignore[no-untyped-call]
            clients = await _command(tracker, "CLIENT", "LIST", "TYPE", "pubsub")
            me = _client_id(_text(clients), name)
            await _command(
                tracker, "CLIENT", "TRACKING", "ON", "REDIRECT", me, "BCAST", "PREFIX", self._prefix
            )
            # A read under way may have fetched its value before tracking was on, and
            # missed a change since: "everything may have changed" keeps it from being held.
            on_change(None)
            self._live.set()
            while True:
                message = await pubsub.get_message(timeout=CHECK_INTERVAL)
                if message is None:
                    await self._check(tracker, me)
                elif message["type"] == "message":
                    keys = message["data"]
                    on_change(None if keys is None else [_text(key) for key in keys])
        finally:
            for close in (pubsub.aclose, subscriber.aclose, tracker.disconnect):
                with contextlib.suppress(Exception):  # closing what may be broken
                    await close()

    @staticmethod
    async def _check(tracker: AbstractConnection, subscriber_id: int) -> None:
        """Raise unless tracking is on and redirected to the subscriber."""
        fields = _pairs(await _command(tracker, "CLIENT", "TRACKINGINFO"))
        raw_flags = fields.get("flags")
        flags = [_text(flag) for flag in raw_flags] if isinstance(raw_flags, list) else []
        if "on" not in flags or fields.get("redirect") != subscriber_id:
            raise ValueError("Redis no longer tracks keys for this process")


async def _command(connection: AbstractConnection, *args: str | int) -> object:
    await connection.send_command(*args)
    answer: object = await connection.read_response()
    if isinstance(answer, Exception):
        raise answer
    return answer


def _client_id(client_list: str, name: str) -> int:
    """The id of the client named ``name`` in ``CLIENT LIST``'s answer."""
    for line in client_list.splitlines():
        fields = dict(field.partition("=")[::2] for field in line.split())
        if fields.get("name") == name:
            return int(fields["id"])
    raise ValueError("the subscriber is not among Redis's clients")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(info: object) -> dict[str, object]:
    """``CLIENT TRACKINGINFO``'s answer, a map in RESP3 and a flat list in RESP2."""
    if isinstance(info, dict):
        return {_text(key): value for key, value in info.items()}
    if isinstance(info, list):
        return {_text(info[i]): info[i + 1] for i in range(0, len(info) - 1, 2)}
    return {}
