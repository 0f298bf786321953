"""Is this event Zoom's? The signature over the raw bytes, checked before anything
else is done with them.

``x-zm-signature`` is ``v0=`` + hex(HMAC-SHA256(Secret Token,
``v0:{x-zm-request-timestamp}:{raw body}``)). It is compared in constant time, over the
body exactly as it arrived (never re-serialised JSON), and the timestamp must be within
``max_skew`` seconds of now, either way: a captured event cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

from proxy.errors import EventMalformed, EventNotVerified, EventStale

#: Digits in a timestamp of unix seconds, at most (a longer one is nonsense, not a date).
_MAX_TIMESTAMP_DIGITS = 12


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``x-zm-signature`` Zoom sends with ``body`` at ``timestamp``."""
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    *,
    timestamp: str | None,
    signed: str | None,
    body: bytes,
    now: float,
    max_skew: int,
) -> tuple[str, str]:
    """The timestamp and signature, once ``signed`` is Zoom's signature of ``body`` at
    ``timestamp``, and ``timestamp`` is within ``max_skew`` seconds of ``now``; else
    :class:`EventMalformed` (no usable timestamp), :class:`EventNotVerified` or
    :class:`EventStale`."""
    if (
        timestamp is None
        or not timestamp.isascii()
        or not timestamp.isdigit()
        or len(timestamp) > _MAX_TIMESTAMP_DIGITS
    ):
        raise EventMalformed()
    if signed is None or not hmac.compare_digest(
        signed.encode("utf-8", "surrogateescape"), signature(secret, timestamp, body).encode()
    ):
        raise EventNotVerified()
    if abs(now - int(timestamp)) > max_skew:
        raise EventStale()
    return timestamp, signed


def url_validation_answer(secret: bytes, plain_token: str) -> dict[str, str]:
    """What Zoom expects back for ``endpoint.url_validation``."""
    encrypted = hmac.new(secret, plain_token.encode(), hashlib.sha256).hexdigest()
    return {"plainToken": plain_token, "encryptedToken": encrypted}
