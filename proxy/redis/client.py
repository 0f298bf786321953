"""Redis for the replicas: one connection pool per process, and the few commands used.

:class:`SharedStore` is the only place that talks to Redis, and so the one place where
a Redis failure (refused, timed out, wrong password, out of connections) becomes
:class:`~proxy.errors.SessionStoreUnavailable`: a 503 for the client, never a 500.
Timeouts are short, so a dead Redis costs a request about two seconds at most::

    client = connect(settings.redis.url.value)      # in a cleanup_ctx
    store = SharedStore(client, prefix="zoom-proxy:")
    await store.set(store.key("grace", digest), sealed, ttl=60)
    await client.aclose()
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.errors import SessionStoreUnavailable

log = logging.getLogger(__name__)

#: Seconds to open a connection. Redis sits next to the proxy: longer means it is down.
CONNECT_TIMEOUT = 1.0
#: Seconds for a command's answer. The proxy's commands take well under a millisecond.
COMMAND_TIMEOUT = 1.0
#: Connections per process, and how long a command waits for a free one.
POOL_SIZE = 64
POOL_WAIT = 2.0
#: One retry on a fresh connection: after Redis restarts, every pooled connection is
#: dead, and the first command on each would fail for no reason.
RETRIES = 1

#: Delete ``KEYS[1]`` only while it still holds ``ARGV[1]``: a lock released by its owner.
_DELETE_IF_EQUAL = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


def connect(url: str) -> Redis:
    """A client over a pool of its own, closed with ``await client.aclose()``.

    ``url`` is ``redis://``, ``rediss://`` (TLS) or ``unix://``, with any password in it.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), RETRIES),
    )
    return Redis.from_pool(pool)


def where(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL: what logs may say, never the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


class SharedStore:
    """The Redis commands the proxy uses, under one key prefix, failing as 503s.

    A failure is logged once per outage, and ``on_failure`` (a metric) is called for
    each; the first success afterwards logs that Redis is back.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        name: str = "Redis",
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._name = name
        self._on_failure = on_failure
        self._delete_if_equal = client.register_script(_DELETE_IF_EQUAL)
        #: False from a failure until the next command that succeeds.
        self.reachable = True

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def ping(self) -> None:
        async with self._translated():
            await self._client.ping()

    async def get(self, key: str) -> bytes | None:
        async with self._translated():
            value = await self._client.get(key)
        return cast(bytes | None, value)

    async def get_many(self, *keys: str) -> list[bytes | None]:
        async with self._translated():
            values = await self._client.mget(keys)
        return cast(list[bytes | None], values)

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (rounded up to a millisecond)."""
        await self.set_many([(key, value, ttl)])

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Store every ``(key, value, ttl)`` at once, in one round trip."""
        async with self._translated(), self._client.pipeline(transaction=True) as pipe:
            for key, value, ttl in items:
                pipe.set(key, value, px=_milliseconds(ttl))
            await pipe.execute()

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        """``SET key value NX PX ttl``: whether ``key`` was free and now holds ``value``."""
        async with self._translated():
            done = await self._client.set(key, value, nx=True, px=_milliseconds(ttl))
        return bool(done)

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only if it still holds ``value``; whether it did."""
        async with self._translated():
            deleted = await self._delete_if_equal(keys=[key], args=[value])
        return bool(deleted)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        async with self._translated():
            await self._client.delete(*keys)

    async def add_to_set(self, key: str, member: str, *, ttl: float) -> None:
        """Add ``member`` to the set ``key``, which then lives ``ttl`` seconds."""
        async with self._translated(), self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(key, member)
            pipe.pexpire(key, _milliseconds(ttl))
            await pipe.execute()

    async def members(self, key: str) -> list[str]:
        async with self._translated():
            members = await self._client.smembers(key)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def append_to_stream(self, key: str, fields: dict[str, str], *, keep_for: float) -> None:
        """Append an entry to the stream ``key``, dropping entries older than ``keep_for``
        seconds (stream ids are Redis's clock in milliseconds)."""
        async with self._translated():
            seconds, micros = await self._client.time()
            oldest = max(0, int(seconds) * 1000 + int(micros) // 1000 - _milliseconds(keep_for))
            await self._client.xadd(key, cast(Any, fields), minid=oldest, approximate=False)

    async def read_stream(self, key: str, *, after: str) -> list[tuple[str, dict[str, str]]]:
        """Up to 1,000 entries of the stream ``key`` after the id ``after``, oldest first."""
        async with self._translated():
            answer: Any = await self._client.xread({key: after}, count=1000)
        if isinstance(answer, dict):  # RESP3
            answer = list(answer.items())
        return [
            (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
            for _, entries in answer or ()
            for entry_id, fields in entries
        ]

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except (TimeoutError, RedisError, OSError) as exc:
            self._on_failure()
            if self.reachable:
                self.reachable = False
                log.warning("%s is unreachable (%s: %s)", self._name, type(exc).__name__, exc)
            raise SessionStoreUnavailable() from exc
        if not self.reachable:
            self.reachable = True
            log.info("%s answers again", self._name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))
