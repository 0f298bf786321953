"""The proxy's Redis store, instrumented for the tests."""

from __future__ import annotations

from proxy.redis.client import SharedStore


class CountingStore(SharedStore):
    """Counts the attempts to take a lock."""

    attempts = 0

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        self.attempts += 1
        return await super().set_if_absent(key, value, ttl=ttl)
