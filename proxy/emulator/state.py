"""The emulator's state and Zoom's rules over it.

`ZoomEmulator` owns users, codes, grants and tokens, and decides what Zoom would
decide; `ZoomEmulator.app` wires the HTTP routes of `oauth`, `api`, `recordings` and
`webhooks` onto it.
A *grant* is one authorization: its tokens, across every refresh, live and die together.
Two apps are emulated: the user app (``authorization_code`` with PKCE, then
``refresh_token``) and a Server-to-Server app (``account_credentials``), whose every
account token is a grant of its own, without a refresh token. The user app has an event
subscription: signed webhooks go to `ZoomEmulator.webhook_url`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from proxy.emulator import tokens, webhooks
from proxy.emulator.api import ApiRoutes
from proxy.emulator.models import (
    EmulatedUser,
    InvalidAccessToken,
    InvalidGrant,
    RecordedRequest,
    TokenSet,
    default_user,
)
from proxy.emulator.oauth import OAuthRoutes
from proxy.emulator.recordings import WebRoutes
from proxy.emulator.webhooks import WebhookRoutes

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
DEFAULT_SCOPE = "user:read meeting:read meeting:write"
DEFAULT_SERVICE_CLIENT_ID = "emulator-s2s-client-id"
DEFAULT_SERVICE_CLIENT_SECRET = "emulator-s2s-client-secret"
DEFAULT_ACCOUNT_ID = "emulator-account-id"
#: The user app's webhook Secret Token, which signs its events.
DEFAULT_WEBHOOK_SECRET = "emulator-webhook-secret-token"
#: What an account token (Server-to-Server OAuth) is granted.
ACCOUNT_SCOPE = "meeting:read:admin meeting:write:admin user:read:admin report:read:admin"
CODE_LIFETIME = 600
TOKEN_ENDPOINT_MODES = frozenset({"ok", "down", "slow", "garbage"})


@dataclass
class _Grant:
    user: EmulatedUser
    scope: str
    revoked: bool = False
    #: An account token's grant (the Server-to-Server app's), not the user app's.
    service: bool = False


@dataclass
class _Code:
    grant: _Grant
    redirect_uri: str
    code_challenge: str
    issued_at: float


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float


@dataclass
class _RefreshToken:
    grant: _Grant
    used: bool = False


class ZoomEmulator:
    """A Zoom stand-in: OAuth (authorize, token, revoke) and a few ``/v2`` API routes.

    Run it like any aiohttp app and point the proxy's URLs at it::

        emulator = ZoomEmulator(token_lifetime=60)
        client = await aiohttp_client(emulator.app())
        # authorize_url=<base>/oauth/authorize, token_url=<base>/oauth/token,
        # revoke_url=<base>/oauth/revoke, api_base_url=<base>/v2

    Tests steer it through public attributes and read what happened from others:

    - `client_id`, `client_secret`: the user app, the only client credentials accepted
      for the ``authorization_code`` and ``refresh_token`` grants and for revoke.
    - `service_client_id`, `service_client_secret`, `account_id`: the Server-to-Server
      app and its account, the only ones the ``account_credentials`` grant accepts; see
      `account_token`.
    - `auto_approve`: redirect with a code at once, or show an approve/deny page.
    - `user`: who approves the next authorization (a grant keeps the user it began with).
    - `token_lifetime`: ``expires_in`` of tokens issued from now on.
    - `token_length`: None for Zoom's ~600 characters, or the length of tokens issued
      from now on.
    - `scope`: what is granted when the authorize request names no ``scope``.
    - `allowed_redirect_uris`: None accepts any http(s) URI, else exact membership.
    - `token_endpoint_mode`: see the property.
    - `counters`: "authorize", "code_ok", "code_rejected", "refresh_ok",
      "refresh_rejected", "account_token_ok", "account_token_rejected" (wrong or no
      account_id), "account_token_invalid_client" (wrong or no S2S client credentials),
      "revoke", "api_ok", "api_401", "token_requests" (every call to the token endpoint,
      whatever its mode), "downloads_aborted" and "holds_aborted" (a held handler
      cancelled because its client went away), "deauthorized" (`deauthorize`).
    - `api_requests`: every request that reached ``/v2``, as received.
    - `meetings`: meetings created through the API, by user id.
    - `clock`: seconds since the epoch; code age, token expiry and webhook timestamps
      follow it.
    - `webhook_url`: the user app's event subscription URL, where `send_event`,
      `validate_endpoint` and `deauthorize` POST signed events; None (the default)
      sends none.
    - `webhook_secret`: the user app's Secret Token, which signs events
      (`DEFAULT_WEBHOOK_SECRET` unless changed).
    - `sent_events`: (event name, HTTP status or None if the endpoint could not be
      reached) of every event sent, in order.
    - `held_requests`, `wait_for_held`, `release_held`: the ``/v2/_test/hold_*`` routes.

    Webhook routes (`webhooks`): ``POST /_test/webhooks/send`` sends any event, and
    ``GET /account`` is `user`'s account page, whose "Remove the app" calls `deauthorize`.
    """

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        service_client_id: str = DEFAULT_SERVICE_CLIENT_ID,
        service_client_secret: str = DEFAULT_SERVICE_CLIENT_SECRET,
        account_id: str = DEFAULT_ACCOUNT_ID,
        user: EmulatedUser | None = None,
        token_lifetime: int = 3599,
        auto_approve: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.service_client_id = service_client_id
        self.service_client_secret = service_client_secret
        self.account_id = account_id
        self.user = user if user is not None else default_user()
        self.token_lifetime = token_lifetime
        self.token_length: int | None = None
        self.auto_approve = auto_approve
        self.clock = clock
        self.scope = DEFAULT_SCOPE
        self.allowed_redirect_uris: set[str] | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self.api_requests: list[RecordedRequest] = []
        self.meetings: dict[str, list[dict[str, Any]]] = {}
        #: Cloud recordings by id: their size in bytes (:mod:`proxy.emulator.recordings`).
        self.recordings: dict[str, int] = {}
        #: Where recordings redirect to: a running StorageServer's base URL.
        self.storage_url: str | None = None
        self.webhook_url: str | None = None
        self.webhook_secret = DEFAULT_WEBHOOK_SECRET
        self.sent_events: list[tuple[str, int | None]] = []
        self._mode = "ok"
        self._changed: asyncio.Event | None = None  # set and replaced on every change
        self._stalled = 0
        self._held = 0
        self._released: asyncio.Event | None = None  # created lazily, set once for good
        self._grants: list[_Grant] = []
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this emulator's state."""
        app = web.Application()
        OAuthRoutes(self).setup(app)
        WebRoutes(self).setup(app)
        WebhookRoutes(self).setup(app)
        app.add_subapp("/v2", ApiRoutes(self).app())
        return app

    # --- token endpoint behaviour -------------------------------------------------

    @property
    def token_endpoint_mode(self) -> str:
        """``"ok"``, ``"down"`` (503), ``"slow"`` (no answer until changed) or ``"garbage"``."""
        return self._mode

    @token_endpoint_mode.setter
    def token_endpoint_mode(self, mode: str) -> None:
        if mode not in TOKEN_ENDPOINT_MODES:
            raise ValueError(f"token_endpoint_mode must be one of {sorted(TOKEN_ENDPOINT_MODES)}")
        self._mode = mode
        self._announce_change()

    @property
    def stalled_token_requests(self) -> int:
        """How many token requests the ``"slow"`` mode is holding right now."""
        return self._stalled

    async def wait_for_stalled_token_requests(self, count: int = 1) -> None:
        """Return once the ``"slow"`` mode holds at least *count* token requests."""
        while self._stalled < count:
            await self._next_change()

    async def wait_for_counter(self, name: str, value: int) -> None:
        """Return once ``counters[name]`` has reached *value* (counted on the API gate)."""
        while self.counters[name] < value:
            await self._next_change()

    def count(self, name: str) -> None:
        """Add one to ``counters[name]`` and wake whoever waits on counters."""
        self.counters[name] += 1
        self._announce_change()

    async def wait_while_slow(self) -> None:
        """Return once `token_endpoint_mode` is not ``"slow"``."""
        if self._mode != "slow":
            return
        self._stalled += 1
        self._announce_change()
        try:
            while self._mode == "slow":
                await self._next_change()
        finally:
            self._stalled -= 1
            self._announce_change()

    # --- held responses (``/v2/_test/hold_headers`` and ``/v2/_test/hold_body``) -----

    @property
    def held_requests(self) -> int:
        """How many handlers of the hold routes are holding right now."""
        return self._held

    async def wait_for_held(self, count: int = 1) -> None:
        """Return once at least *count* handlers of the hold routes are holding."""
        while self._held < count:
            await self._next_change()

    def release_held(self) -> None:
        """Let every held handler finish. For good: later hold requests do not hold.

        To hold again, use a new emulator.
        """
        self._release_event().set()

    async def hold(self) -> None:
        """Wait until `release_held`, counted in `held_requests`; for the hold routes.

        A client that goes away cancels its handler (with aiohttp's
        ``handler_cancellation=True``, as `TestServer` and ``proxy.serve`` use): the hold
        ends, counting "holds_aborted", and the cancellation goes on to aiohttp.
        """
        self._held += 1
        self._announce_change()
        try:
            await self._release_event().wait()
        except asyncio.CancelledError:
            self.counters["holds_aborted"] += 1
            raise
        finally:
            self._held -= 1
            self._announce_change()

    def _release_event(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    def _announce_change(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _next_change(self) -> None:
        # Created lazily, so the event belongs to the loop that waits on it.
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    # --- OAuth rules ----------------------------------------------------------------

    def client_matches(self, client_id: str, client_secret: str) -> bool:
        """Whether the credentials are the user app's client id and secret."""
        id_ok = _same(client_id, self.client_id)
        secret_ok = _same(client_secret, self.client_secret)
        return id_ok and secret_ok

    def service_client_matches(self, client_id: str, client_secret: str) -> bool:
        """Whether the credentials are the Server-to-Server app's client id and secret."""
        id_ok = _same(client_id, self.service_client_id)
        secret_ok = _same(client_secret, self.service_client_secret)
        return id_ok and secret_ok

    def redirect_uri_allowed(self, redirect_uri: str) -> bool:
        """Whether *redirect_uri* may receive codes (see `allowed_redirect_uris`)."""
        if self.allowed_redirect_uris is not None:
            return redirect_uri in self.allowed_redirect_uris
        try:
            url = URL(redirect_uri)
        except ValueError:
            return False
        return url.scheme in ("http", "https") and bool(url.host) and "#" not in redirect_uri

    def issue_code(self, *, redirect_uri: str, code_challenge: str, scope: str | None) -> str:
        """Record an approved authorization by `user` and return its code."""
        code = tokens.new_code()
        grant = _Grant(user=self.user, scope=scope or self.scope)
        self._grants.append(grant)
        self._codes[code] = _Code(grant, redirect_uri, code_challenge, self.clock())
        logger.debug("authorization approved for user %s", grant.user.id)
        return code

    def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        """Trade an authorization code for tokens; raises `InvalidGrant`.

        A code is spent by its first exchange attempt, successful or not. Like Zoom, every
        refusal is ``invalid_request`` (not ``invalid_grant``); unlike Zoom, the reason
        never echoes the code.
        """
        entry = self._codes.pop(code, None)
        if entry is None or entry.grant.revoked:
            problem = "unknown or already used"
        elif self.clock() - entry.issued_at > CODE_LIFETIME:
            problem = "expired"
        elif redirect_uri != entry.redirect_uri:
            problem = "redirect_uri differs from the authorize request"
        elif not tokens.verifier_matches(code_verifier, entry.code_challenge):
            problem = "code_verifier does not match code_challenge"
        else:
            self.counters["code_ok"] += 1
            return self._issue_tokens(entry.grant)
        self.counters["code_rejected"] += 1
        logger.debug("authorization code refused: %s", problem)
        raise InvalidGrant("Invalid authorization code", error="invalid_request")

    def refresh(self, refresh_token: str) -> TokenSet:
        """Rotate a refresh token into a new pair; the old one dies at once."""
        entry = self._refresh.get(refresh_token)
        if entry is None or entry.used or entry.grant.revoked:
            self.counters["refresh_rejected"] += 1
            raise InvalidGrant("Invalid Token!")
        entry.used = True
        self.counters["refresh_ok"] += 1
        return self._issue_tokens(entry.grant)

    def account_token(self, account_id: str) -> TokenSet:
        """The ``account_credentials`` grant, once the handler has authenticated the S2S
        app: a fresh account token for *account_id*, else `InvalidGrant`
        (``invalid_request``, "Invalid account_id").

        The token acts as the account's owner, which the emulator takes to be `user` at
        the time of minting (by default Ada, role "Owner"; the emulator models one
        account, so `account_id` is not checked against ``user.account_id``):
        ``/v2/users/me`` shows them and meetings are theirs, as with their user token. It is
        granted `ACCOUNT_SCOPE`, lasts `token_lifetime` seconds by `clock`, and comes
        without a refresh token; minting another leaves earlier ones valid. Each token
        is its own grant, so `revoke` ends only it and `revoke_all` ends them all.
        """
        if not _same(account_id, self.account_id):
            self.counters["account_token_rejected"] += 1
            raise InvalidGrant("Invalid account_id", error="invalid_request")
        grant = _Grant(user=self.user, scope=ACCOUNT_SCOPE, service=True)
        self._grants.append(grant)
        self.counters["account_token_ok"] += 1
        access = self._new_access_token(grant, client_id=self.service_client_id)
        logger.debug("account token issued for user %s", grant.user.id)
        return TokenSet(access, None, self.token_lifetime, grant.scope)

    def add_recording(self, size: int) -> str:
        """A new cloud recording of ``size`` bytes; its id."""
        recording = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        self.recordings[recording] = size
        return recording

    def revoke(self, token: str) -> None:
        """End the grant *token* (access or refresh, current or rotated) belongs to."""
        entry = self._access.get(token) or self._refresh.get(token)
        if entry is not None:
            entry.grant.revoked = True
            logger.debug("grant of user %s revoked", entry.grant.user.id)
        self.counters["revoke"] += 1

    def authenticate(self, access_token: str) -> EmulatedUser:
        """The user behind a bearer token; raises `InvalidAccessToken` with Zoom's text."""
        entry = self._access.get(access_token)
        if entry is None or entry.grant.revoked:
            raise InvalidAccessToken("Invalid access token.")
        if self.clock() >= entry.expires_at:
            raise InvalidAccessToken("Access token is expired.")
        return entry.grant.user

    def user_for(self, access_token: str) -> EmulatedUser | None:
        """The user behind a currently valid access token, else None."""
        try:
            return self.authenticate(access_token)
        except InvalidAccessToken:
            return None

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued so far, for checking nothing leaks them."""
        return [*self._access, *self._refresh]

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (the API answers 401 code 124)."""
        for entry in self._access.values():
            entry.expires_at = float("-inf")

    def revoke_all(self) -> None:
        """Revoke every grant: all codes and tokens issued so far stop working."""
        for grant in self._grants:
            grant.revoked = True

    # --- webhooks -----------------------------------------------------------------------

    async def send_event(
        self, event: str, payload: dict[str, Any], *, timestamp: int | None = None
    ) -> int | None:
        """POST ``{"event", "event_ts", "payload"}`` to `webhook_url`, signed with
        `webhook_secret` at *timestamp* (unix seconds, by default now by `clock`), and
        record it in `sent_events`.

        Returns the endpoint's HTTP status, or None if it could not be reached or did
        not answer within 3 seconds; None too, recording nothing, if `webhook_url` is None.
        """
        answer = await self._send(event, payload, timestamp)
        return None if answer is None else answer[0]

    async def validate_endpoint(self) -> bool:
        """Zoom's URL validation: send ``endpoint.url_validation`` with a random
        ``plainToken``; whether the endpoint answered 200 with JSON holding that
        ``plainToken`` and its ``encryptedToken`` (HMAC-SHA256 by `webhook_secret`)."""
        plain_token = secrets.token_urlsafe(16)
        answer = await self._send("endpoint.url_validation", {"plainToken": plain_token}, None)
        if answer is None or answer[0] != 200:
            return False
        expected = {
            "plainToken": plain_token,
            "encryptedToken": webhooks.encrypted_token(self.webhook_secret, plain_token),
        }
        return _answers(answer[1], expected)

    async def deauthorize(self, user_id: str) -> int | None:
        """The user removes the user app: every grant of theirs is revoked at once (each
        access and refresh token, and any pending code; account tokens, the other
        app's, stay), counting "deauthorized", then ``app_deauthorized`` is sent.

        Returns the status `send_event` returns for that event.
        """
        user = self._find_user(user_id)
        for grant in self._grants:
            if grant.user.id == user_id and not grant.service:
                grant.revoked = True
        logger.debug("user %s deauthorized the app", user_id)
        self.count("deauthorized")
        payload = {
            "account_id": user.account_id if user is not None else self.account_id,
            "user_id": user_id,
            "signature": secrets.token_hex(32),
            "deauthorization_time": webhooks.zoom_timestamp(self.clock()),
            "client_id": self.client_id,
        }
        return await self.send_event("app_deauthorized", payload)

    async def _send(
        self, event: str, payload: dict[str, Any], timestamp: int | None
    ) -> tuple[int, bytes] | None:
        """Send an event to `webhook_url` and record it; the answer's status and body."""
        if self.webhook_url is None:
            return None
        now = self.clock()
        body = {"event": event, "event_ts": int(now * 1000), "payload": payload}
        stamp = int(now) if timestamp is None else timestamp
        answer = await webhooks.deliver(self.webhook_url, self.webhook_secret, body, stamp)
        self.sent_events.append((event, None if answer is None else answer[0]))
        return answer

    def _find_user(self, user_id: str) -> EmulatedUser | None:
        """The user with *user_id*: `user`, or whom a grant was made for, else None."""
        if self.user.id == user_id:
            return self.user
        return next((g.user for g in self._grants if g.user.id == user_id), None)

    def _issue_tokens(self, grant: _Grant) -> TokenSet:
        """A user-app access and refresh token pair for *grant*."""
        access = self._new_access_token(grant, client_id=self.client_id)
        claims = {**self._claims(grant, self.client_id), "type": 1}
        claims["exp"] = int(self.clock()) + 90 * 86400
        refresh = tokens.new_token(claims, length=self.token_length)
        self._refresh[refresh] = _RefreshToken(grant)
        logger.debug("tokens issued for user %s", grant.user.id)
        return TokenSet(access, refresh, self.token_lifetime, grant.scope)

    def _new_access_token(self, grant: _Grant, *, client_id: str) -> str:
        """A new access token of *grant*, valid for `token_lifetime` from now."""
        now = self.clock()
        claims = {**self._claims(grant, client_id), "type": 0}
        claims["exp"] = int(now) + self.token_lifetime
        access = tokens.new_token(claims, length=self.token_length)
        self._access[access] = _AccessToken(grant, now + self.token_lifetime)
        return access

    def _claims(self, grant: _Grant, client_id: str) -> dict[str, object]:
        now = int(self.clock())
        return {
            "aud": "https://oauth.zoom.us",
            "uid": grant.user.id,
            "aid": grant.user.account_id,
            "iss": f"zm:cid:{client_id}",
            "ver": 10,
            "nbf": now,
            "iat": now,
        }


def _answers(body: bytes, expected: dict[str, str]) -> bool:
    """Whether *body* is a JSON object holding each of *expected*'s fields, equal."""
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(fields, dict) and all(fields.get(k) == v for k, v in expected.items())


def _same(given: str, expected: str) -> bool:
    """Constant-time string equality, for credentials."""
    return secrets.compare_digest(given.encode(), expected.encode())
