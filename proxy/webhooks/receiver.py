"""``POST /webhooks/zoom``: Zoom's events, verified, then answered, acted on and passed
on (SPEC 14).

In order: the raw body (at most :data:`MAX_EVENT_BYTES`) is verified
(:mod:`proxy.webhooks.verify`) before anything reads it; then parsed
(:mod:`proxy.webhooks.events`). ``endpoint.url_validation`` is answered here. Any other
event is handled once (:mod:`proxy.webhooks.replays`): ``app_deauthorized`` ends the
user's sessions on every replica, and every event goes to ``forward_to``
(:mod:`proxy.webhooks.delivery`), or, without one, is logged by its name. A refusal is
a :class:`~proxy.errors.ProxyError`, answered like any other. No cookie is read here,
and no log line holds the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import hdrs, web

from proxy.config import WebhookSettings
from proxy.errors import (
    EventMalformed,
    EventNotDelivered,
    EventTooLarge,
    ProxyError,
)
from proxy.forward.core import read_some
from proxy.observe.metrics import Metrics
from proxy.session.store import SessionStore
from proxy.webhooks.delivery import Backend
from proxy.webhooks.events import DEAUTHORIZED, URL_VALIDATION, Event, parse
from proxy.webhooks.replays import Replays
from proxy.webhooks.verify import url_validation_answer, verify

log = logging.getLogger(__name__)

#: The largest event body taken.
MAX_EVENT_BYTES = 1 << 20
TIMESTAMP = "x-zm-request-timestamp"
SIGNATURE = "x-zm-signature"
#: The resolution of Zoom's ``deauthorization_time``: milliseconds.
_ZOOM_TIME_RESOLUTION = 0.001
#: Seconds a body may stall while it arrives.
_STALL_LIMIT = 10.0


class Webhooks:
    """Zoom's events for this app, under its Secret Token."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        sessions: SessionStore,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.secret_token is not None
        self._secret = settings.secret_token.value.encode()
        self._max_skew = settings.max_skew
        self._sessions = sessions
        self._metrics = metrics
        self._clock = clock
        self._backend = (
            None
            if settings.forward_to is None
            else Backend(settings.forward_to, timeout=settings.forward_timeout)
        )
        # Past twice the skew, a copy's timestamp is refused as stale anyway.
        self._replays = Replays(remember_for=2 * settings.max_skew)

    async def receive(self, request: web.Request) -> web.Response:
        """Handle ``POST /webhooks/zoom``."""
        label = "unverified"
        try:
            body = await _body(request)
            timestamp, signed = verify(
                self._secret,
                timestamp=_one(request, TIMESTAMP),
                signed=_one(request, SIGNATURE),
                body=body,
                now=self._clock(),
                max_skew=self._max_skew,
            )
            event = parse(body)
            label = event.label
            if event.name == URL_VALIDATION:
                answer = self._validation_answer(event)
                self._metrics.count_webhook_event(label, "validated")
                return web.json_response(answer)
            headers = [
                (hdrs.CONTENT_TYPE, request.headers.get(hdrs.CONTENT_TYPE, "application/json")),
                (TIMESTAMP, timestamp),
                (SIGNATURE, signed),
            ]
            first = await self._replays.once(signed, lambda: self._handle(event, body, headers))
        except ProxyError as error:
            outcome = "not_delivered" if isinstance(error, EventNotDelivered) else "refused"
            self._metrics.count_webhook_event(label, outcome)
            raise
        if not first:
            self._metrics.count_webhook_event(label, "duplicate")
        return web.json_response({"received": True})

    def _validation_answer(self, event: Event) -> dict[str, str]:
        plain_token = event.payload.get("plainToken")
        if not isinstance(plain_token, str) or not plain_token:
            raise EventMalformed("An endpoint.url_validation event needs a plainToken.")
        return url_validation_answer(self._secret, plain_token)

    async def _handle(self, event: Event, body: bytes, headers: list[tuple[str, str]]) -> None:
        if event.name == DEAUTHORIZED:
            await self._deauthorize(event)
        if self._backend is not None:
            await self._backend.deliver(body, headers, event.name)
            self._metrics.count_webhook_event(event.label, "forwarded")
        else:
            log.info("webhook event %s verified", event.name)
            self._metrics.count_webhook_event(event.label, "accepted")

    async def _deauthorize(self, event: Event) -> None:
        user_id = event.payload.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            raise EventMalformed("An app_deauthorized event needs a payload.user_id.")
        # Zoom's time, to the end of its millisecond (a sign-in within it counts as
        # before); but never later than now: a sign-in after this event arrived is a new
        # authorization, whatever Zoom's clock says.
        now = self._clock()
        zoom_time = _instant(event.payload.get("deauthorization_time"))
        at = now if zoom_time is None else min(zoom_time + _ZOOM_TIME_RESOLUTION, now)
        await self._sessions.end_user(user_id, at)
        log.info("Zoom user %s removed the app: every session of theirs has ended", user_id)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


WEBHOOKS = web.AppKey("webhooks", Webhooks)


async def receive(request: web.Request) -> web.Response:
    return await request.app[WEBHOOKS].receive(request)


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_EVENT_BYTES:
        raise EventTooLarge()
    body = bytearray()
    while chunk := await read_some(request.content, _STALL_LIMIT):
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise EventTooLarge()
    return bytes(body)


def _one(request: web.Request, name: str) -> str | None:
    """The header's one value; two differing copies make the event ambiguous."""
    values = set(request.headers.getall(name, ()))
    if len(values) > 1:
        raise EventMalformed(f"The event has more than one {name} header.")
    return values.pop() if values else None


def _instant(value: object) -> float | None:
    """Zoom's ISO 8601 time (``2026-12-04T16:20:00.123Z``) in unix seconds, if it is one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
