"""Zoom's webhooks, sent the way Zoom sends them, and the pages that send them.

An event is a JSON POST to the app's event subscription URL, signed with the app's
Secret Token: ``x-zm-request-timestamp`` (unix seconds) and ``x-zm-signature``, which
is `sign` of that timestamp and the raw body. `ZoomEmulator.send_event`,
`~ZoomEmulator.validate_endpoint` and `~ZoomEmulator.deauthorize` decide what to send;
`deliver` sends it. `WebhookRoutes` adds:

- ``POST /_test/webhooks/send``: send any event, for tests and demos (no auth).
- ``GET /account`` and ``POST /account/deauthorize``: the user's account page, where
  "Remove the app" deauthorizes it, as on Zoom's App Marketplace.

Links and form actions are relative, as the emulator may be mounted under a prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from proxy.emulator.pages import page

if TYPE_CHECKING:
    from proxy.emulator.state import ZoomEmulator

logger = logging.getLogger(__name__)

#: How long Zoom waits for the endpoint's answer (3 seconds, as for URL validation).
DELIVERY_TIMEOUT = 3.0
#: The User-Agent of Zoom's webhook requests.
USER_AGENT = "Zoom Marketplace/1.0a"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``x-zm-signature`` of *body* sent at *timestamp* (unix seconds, in decimal):
    ``v0=`` and the hex HMAC-SHA256, keyed by the Secret Token, of ``v0:{timestamp}:{body}``.
    """
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def encrypted_token(secret: str, plain_token: str) -> str:
    """The ``encryptedToken`` an endpoint answers URL validation with: the hex
    HMAC-SHA256 of the ``plainToken``, keyed by the Secret Token."""
    return hmac.new(secret.encode(), plain_token.encode(), hashlib.sha256).hexdigest()


def zoom_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as in ``deauthorization_time``."""
    at = datetime.fromtimestamp(seconds, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def deliver(
    url: str, secret: str, event: dict[str, Any], timestamp: int
) -> tuple[int, bytes] | None:
    """POST *event* to *url*, signed at *timestamp*, on a session of its own; the answer's
    status and body, or None if the endpoint could not be reached or took longer than
    `DELIVERY_TIMEOUT`."""
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = str(timestamp)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "x-zm-request-timestamp": stamp,
        "x-zm-signature": sign(secret, stamp, body),
    }
    timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as answer,
        ):
            return answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        logger.info("webhook %s not delivered: %s", event.get("event"), type(exc).__name__)
        return None


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": "invalid_request", "message": message}, status=400)


class WebhookRoutes:
    """The webhook routes of one `ZoomEmulator`; install with `setup`."""

    def __init__(self, emulator: ZoomEmulator) -> None:
        self._emulator = emulator

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/_test/webhooks/send", self.send)
        app.router.add_get("/account", self.account)
        app.router.add_post("/account/deauthorize", self.deauthorize)

    async def send(self, request: web.Request) -> web.StreamResponse:
        """``POST /_test/webhooks/send`` with ``{"event", "payload", "timestamp"?}``:
        `ZoomEmulator.send_event`, answered ``{"status": <the endpoint's, or null>}``."""
        try:
            fields = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _bad_request("The body must be JSON.")
        if not isinstance(fields, dict):
            return _bad_request("The body must be a JSON object.")
        event, payload = fields.get("event"), fields.get("payload")
        timestamp = fields.get("timestamp")
        if not isinstance(event, str) or not event:
            return _bad_request("event must be a non-empty string.")
        if not isinstance(payload, dict):
            return _bad_request("payload must be a JSON object.")
        if timestamp is not None and (
            isinstance(timestamp, bool) or not isinstance(timestamp, int)
        ):
            return _bad_request("timestamp must be an integer (unix seconds).")
        status = await self._emulator.send_event(event, payload, timestamp=timestamp)
        return web.json_response({"status": status})

    async def account(self, request: web.Request) -> web.StreamResponse:
        """The current user's account page: who they are and, when the app has an event
        subscription URL, a button that removes the app."""
        emulator = self._emulator
        body = f"<p>Signed in to Zoom as {_who(emulator)}.</p>"
        if emulator.webhook_url is not None:
            body += (
                f"<p>Installed app: {html.escape(emulator.client_id)}. Removing it revokes"
                " its access to your account, and Zoom tells the app"
                " (an <code>app_deauthorized</code> event).</p>"
                '<form method="post" action="account/deauthorize">'
                "<button>Remove the app</button></form>"
            )
        else:
            body += "<p>No app here has an event subscription URL to be told of its removal.</p>"
        return page("Your Zoom account", body)

    async def deauthorize(self, request: web.Request) -> web.StreamResponse:
        """``POST /account/deauthorize``: `ZoomEmulator.deauthorize` the current user."""
        emulator = self._emulator
        subscribed = emulator.webhook_url is not None
        status = await emulator.deauthorize(emulator.user.id)
        if not subscribed:
            told = "No event subscription URL is set, so the app was not notified."
        elif status is None:
            told = "Zoom notified the app, whose endpoint could not be reached."
        else:
            told = f"Zoom notified the app, whose endpoint answered HTTP {status}."
        body = (
            f"<p>The app was removed from the Zoom account of {_who(emulator)}:"
            f" its tokens no longer work.</p><p>{told}</p>"
            '<p><a href="../account">Back to your account</a></p>'
        )
        return page("App removed", body)


def _who(emulator: ZoomEmulator) -> str:
    """The current user's name and email, escaped."""
    user = emulator.user
    name = html.escape(f"{user.first_name} {user.last_name}")
    return f"{name} ({html.escape(user.email)})"
