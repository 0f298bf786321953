"""Zoom's OAuth 2.0 endpoints as plain async calls over one shared ``ClientSession``.

Nothing here knows about the proxy's own HTTP surface. Failures become the errors
of :mod:`proxy.errors`: Zoom refusing a grant, Zoom being down, or Zoom answering
nonsense are three different things to the user, so they stay three exceptions.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from proxy.errors import (
    CodeRejected,
    ProxyError,
    RefreshRejected,
    ServiceCredentialsRejected,
    TokenEndpointInvalid,
    TokenEndpointUnavailable,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.tokens.model import Tokens, User

log = logging.getLogger(__name__)

#: 32 random bytes: 256 bits of state and a 43-character PKCE verifier (RFC 7636's minimum).
RANDOM_BYTES = 32
#: Zoom's access tokens live an hour; anything past a day is nonsense, not a token.
MAX_EXPIRES_IN = 86400.0


def random_token() -> str:
    return secrets.token_urlsafe(RANDOM_BYTES)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for ``verifier`` (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class ZoomOAuth:
    """Zoom's authorize, token, revoke and ``/users/me`` endpoints for one OAuth app."""

    http: aiohttp.ClientSession
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    revoke_url: str
    api_base_url: str
    redirect_uri: str
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"ZoomOAuth(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def authorize_redirect(self, *, state: str, verifier: str) -> str:
        """Where to send the browser to start sign-in."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self.scopes:
            params["scope"] = " ".join(self.scopes)
        separator = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{separator}{urlencode(params)}"

    async def exchange_code(self, code: str, *, verifier: str) -> Tokens:
        """Trade an authorization code for tokens; a refused code is :class:`CodeRejected`.

        Zoom refuses a bad, expired or reused code with ``400 invalid_request``, so any
        400 here means the code, not the proxy's configuration.
        """
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }
        return await self._token_call(
            form, rejected=lambda status: CodeRejected(), rejected_errors=None
        )

    async def refresh(self, refresh_token: str) -> Tokens:
        """Rotate the token pair; a dead refresh token is :class:`RefreshRejected`."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._token_call(
            form,
            rejected=lambda status: RefreshRejected(),
            rejected_errors=frozenset({"invalid_grant"}),
        )

    async def account_token(self, account_id: str) -> Tokens:
        """A Server-to-Server app's account token (``account_credentials``; no refresh
        token). Zoom refusing the app (401) or the account ID (400) is
        :class:`ServiceCredentialsRejected`, logged once naming the key at fault."""
        form = {"grant_type": "account_credentials", "account_id": account_id}
        return await self._token_call(
            form,
            rejected=self._service_rejected,
            rejected_errors=None,
            rejected_statuses=frozenset({400, 401}),
            refreshable=False,
        )

    def _service_rejected(self, status: int) -> ServiceCredentialsRejected:
        at_fault = (
            "service.account_id" if status == 400 else "service.client_id and service.client_secret"
        )
        log.error(
            "Zoom refused the service app's account token (HTTP %d): check %s (client_id %s)",
            status,
            at_fault,
            self.client_id,
        )
        return ServiceCredentialsRejected()

    async def revoke(self, token: str) -> bool:
        """Revoke the authorization at Zoom, best effort: failures are logged, not raised."""
        try:
            async with self.http.post(
                self.revoke_url, data={"token": token}, headers=self._client_auth()
            ) as response:
                await response.read()
                if response.status == 200:
                    return True
                log.warning("Zoom refused to revoke a token: HTTP %d", response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("revoking at Zoom failed: %s", type(exc).__name__)
        return False

    async def fetch_user(self, access_token: str) -> User:
        """``GET /users/me`` with a fresh access token."""
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        try:
            async with self.http.get(f"{self.api_base_url}/users/me", headers=headers) as response:
                body = await _json_or_none(response)
                status = response.status
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamUnreachable() from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout() from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable() from exc
        if status != 200 or not isinstance(body, dict):
            log.warning("Zoom's /users/me answered HTTP %d during sign-in", status)
            raise UpstreamUnreachable("Zoom did not return the signed-in user. Try again.")
        try:
            return User.from_zoom(body)
        except ValueError as exc:
            raise UpstreamUnreachable("Zoom returned a user without an id.") from exc

    def _client_auth(self) -> dict[str, str]:
        """HTTP Basic client authentication, as Zoom's token and revoke endpoints require."""
        credentials = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}

    async def _token_call(
        self,
        form: dict[str, str],
        *,
        rejected: Callable[[int], ProxyError],
        rejected_errors: frozenset[str] | None,
        rejected_statuses: frozenset[int] = frozenset({400}),
        refreshable: bool = True,
    ) -> Tokens:
        """POST to the token endpoint. A status in ``rejected_statuses`` (a 400) whose
        ``error`` is in ``rejected_errors`` (any, when that is None) raises ``rejected``,
        given the status."""
        try:
            async with self.http.post(
                self.token_url,
                data=form,
                headers={**self._client_auth(), "Accept": "application/json"},
            ) as response:
                body = await _json_or_none(response)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("Zoom's token endpoint is unreachable: %s", type(exc).__name__)
            raise TokenEndpointUnavailable() from exc
        if status >= 500 or status == 429:
            log.warning("Zoom's token endpoint answered HTTP %d", status)
            raise TokenEndpointUnavailable()
        error = body.get("error") if isinstance(body, dict) else None
        if status in rejected_statuses and (rejected_errors is None or error in rejected_errors):
            raise rejected(status)
        if status != 200 or not isinstance(body, dict):
            log.error("Zoom's token endpoint answered HTTP %d, error %r", status, error)
            raise TokenEndpointInvalid(
                "Zoom's token endpoint refused the proxy's request"
                + (" (check zoom.client_id and zoom.client_secret)." if status == 401 else ".")
            )
        try:
            return tokens_from_zoom(body, refreshable=refreshable)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            log.error("Zoom's token endpoint answered without usable tokens")
            raise TokenEndpointInvalid() from exc


def _is_token(value: object) -> bool:
    """Non-empty printable ASCII: a token goes into a header line as it is."""
    return isinstance(value, str) and bool(value) and value.isascii() and value.isprintable()


def tokens_from_zoom(body: dict[str, Any], *, refreshable: bool = True) -> Tokens:
    """Tokens from a token endpoint's answer; an account token (not ``refreshable``)
    has no refresh token."""
    access = body["access_token"]
    refresh = body["refresh_token"] if refreshable else ""
    if not (_is_token(access) and (_is_token(refresh) or not refreshable)):
        raise ValueError("tokens missing or malformed")
    expires_in = float(body["expires_in"])
    if not 0 < expires_in <= MAX_EXPIRES_IN:
        raise ValueError("expires_in out of range")
    scope = body.get("scope", "")
    return Tokens(
        access_token=access,
        refresh_token=refresh,
        expires_at=time.time() + expires_in,
        scope=scope if isinstance(scope, str) else "",
    )


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None
