"""Who a service caller is, from its key, and whether it may make this call now.

A key is never kept: the proxy knows only its SHA-256 (``service.callers[].key_sha256``)
and compares the presented key's hash with every caller's, in constant time, so that
neither a log line nor the time an answer takes tells anything about a key.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Iterable

from proxy.callers.rules import AllowRule, allowed
from proxy.config import CallerSettings
from proxy.errors import CallerNotAllowed, CallerRateLimited, InvalidCallerKey

#: What every key the proxy issues starts with (``python -m proxy gen-caller-key``).
KEY_PREFIX = "zps_"
#: Random bytes in a key: 256 bits.
KEY_BYTES = 32
_BEARER = "bearer "


def new_key() -> tuple[str, str]:
    """A fresh caller key and its ``key_sha256``."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return key, key_sha256(key)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class TokenBucket:
    """``rate`` requests a second on average, bursts of up to twice that."""

    __slots__ = ("_clock", "_level", "_rate", "_size", "_updated")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._size = 2 * rate
        self._level = self._size
        self._clock = clock
        self._updated = clock()

    def take(self) -> None:
        """Spend one request, or :class:`CallerRateLimited` with whole seconds to wait."""
        now = self._clock()
        self._level = min(self._size, self._level + (now - self._updated) * self._rate)
        self._updated = now
        if self._level < 1:
            raise CallerRateLimited(math.ceil((1 - self._level) / self._rate))
        self._level -= 1


class Caller:
    """One configured service caller."""

    __slots__ = ("_bucket", "_rules", "digest", "downloads", "name")

    def __init__(
        self, settings: CallerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = settings.name
        self.downloads = settings.downloads
        #: The SHA-256 of its key.
        self.digest = bytes.fromhex(settings.key_sha256)
        self._rules: tuple[AllowRule, ...] = settings.allow
        rate = settings.rate_per_second
        self._bucket = None if rate is None else TokenBucket(rate, clock)

    def admit(self, method: str, path: str) -> None:
        """:class:`CallerNotAllowed` unless a rule allows ``method`` on ``path`` (the raw
        path after ``/api``); then :class:`CallerRateLimited` if over its rate."""
        if not allowed(self._rules, method, path):
            raise CallerNotAllowed()
        if self._bucket is not None:
            self._bucket.take()

    def admit_download(self) -> None:
        """:class:`CallerNotAllowed` unless it has ``downloads: true``; then its rate."""
        if not self.downloads:
            raise CallerNotAllowed("This caller may not use /download (downloads: false).")
        if self._bucket is not None:
            self._bucket.take()


class Callers:
    """The configured callers, found by key."""

    def __init__(
        self, settings: Iterable[CallerSettings], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._callers = tuple(Caller(caller, clock) for caller in settings)
        #: Every caller's name, for a bounded metrics label.
        self.names = tuple(caller.name for caller in self._callers)

    def identify(self, authorization: str) -> Caller:
        """The caller whose key ``Authorization: Bearer <key>`` carries, else
        :class:`InvalidCallerKey`. Every caller's digest is compared, whichever matches."""
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise InvalidCallerKey()
        digest = hashlib.sha256(
            authorization[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")
        ).digest()
        found = None
        for caller in self._callers:
            if hmac.compare_digest(digest, caller.digest):
                found = caller
        if found is None:
            raise InvalidCallerKey()
        return found
