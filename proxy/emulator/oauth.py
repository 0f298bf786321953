"""Zoom's OAuth endpoints: ``/oauth/authorize``, ``/oauth/token`` and ``/oauth/revoke``.

The handlers translate HTTP to `ZoomEmulator`'s rules and its answers back to the
bodies Zoom sends. The token endpoint serves the user app's ``authorization_code`` and
``refresh_token`` grants and the Server-to-Server app's ``account_credentials`` grant
(``grant_type=account_credentials&account_id=...``), each app authenticated by HTTP
Basic with its own client id and secret only. Nothing here logs a code, token or secret.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from proxy.emulator.models import InvalidGrant
from proxy.emulator.pages import page

if TYPE_CHECKING:
    from proxy.emulator.state import ZoomEmulator

_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class _AuthorizeRequest:
    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str | None
    scope: str | None

    def hidden_fields(self) -> str:
        fields = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "state": self.state,
            "scope": self.scope,
        }
        return "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in fields.items()
            if value is not None
        )


class _BadAuthorize(Exception):
    """An authorize request Zoom would answer with an error page, not a redirect."""


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    """*uri* with *params* appended to whatever query it already has."""
    separator = "&" if "?" in uri else "?"
    if uri.endswith(("?", "&")):
        separator = ""
    return uri + separator + urlencode(params)


def _oauth_error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"reason": reason, "error": error}, status=status)


class OAuthRoutes:
    """The ``/oauth/*`` handlers of one `ZoomEmulator`; install with `setup`."""

    def __init__(self, emulator: ZoomEmulator) -> None:
        self._emulator = emulator

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/oauth/authorize", self.authorize)
        app.router.add_post("/oauth/authorize", self.decide)
        app.router.add_post("/oauth/token", self.token)
        app.router.add_post("/oauth/revoke", self.revoke)

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """Approve at once (auto_approve) or show an approve/deny page."""
        try:
            ask = self._parse_authorize(request.query)
        except _BadAuthorize as exc:
            return page("Invalid request", f"<p>{html.escape(str(exc))}</p>", status=400)
        self._emulator.counters["authorize"] += 1
        if self._emulator.auto_approve:
            raise web.HTTPFound(self._approve(ask))
        user = self._emulator.user
        body = (
            f"<p>Allow this app to use Zoom as "
            f"{html.escape(user.first_name)} {html.escape(user.last_name)} "
            f"({html.escape(user.email)})?</p>"
            f'<form method="post" action="authorize">{ask.hidden_fields()}'
            '<button name="decision" value="approve">Approve</button> '
            '<button class="secondary" name="decision" value="deny">Deny</button></form>'
        )
        if self._emulator.webhook_url is not None:
            # Relative: from .../oauth/authorize to .../account, whatever the prefix.
            body += '<p><a href="../account">Remove this app from your Zoom account</a></p>'
        return page("Authorize app", body)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        """The consent page's form: approve issues a code, deny sends access_denied."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        try:
            ask = self._parse_authorize(form)
        except _BadAuthorize as exc:
            return page("Invalid request", f"<p>{html.escape(str(exc))}</p>", status=400)
        decision = form.get("decision")
        if decision == "approve":
            raise web.HTTPFound(self._approve(ask))
        if decision == "deny":
            params = {"error": "access_denied"}
            if ask.state is not None:
                params["state"] = ask.state
            raise web.HTTPFound(_with_query(ask.redirect_uri, params))
        return page("Invalid request", "<p>Choose Approve or Deny.</p>", status=400)

    async def token(self, request: web.Request) -> web.StreamResponse:
        """``POST /oauth/token``: the authorization_code and refresh_token grants of the
        user app, and the account_credentials grant of the Server-to-Server app.

        `ZoomEmulator.token_endpoint_mode` applies to every grant alike, before the
        request is read. The other app's credentials are ``invalid_client`` (401).
        """
        emulator = self._emulator
        emulator.counters["token_requests"] += 1
        await emulator.wait_while_slow()
        if emulator.token_endpoint_mode == "down":
            return _oauth_error(503, "temporarily_unavailable", "Service Unavailable")
        if emulator.token_endpoint_mode == "garbage":
            return page("Zoom", "<p>Something went wrong. Please try again later.</p>")
        params = await _params(request)
        grant_type = params.get("grant_type")
        # The S2S app may only use its grant, and the user app only the others.
        service = grant_type == "account_credentials"
        if not self._client_authenticated(request, service=service):
            if service:
                emulator.counters["account_token_invalid_client"] += 1
            return _invalid_client()
        try:
            if service:
                tokens = emulator.account_token(params.get("account_id", ""))
            elif grant_type == "authorization_code":
                tokens = emulator.exchange_code(
                    code=params.get("code", ""),
                    redirect_uri=params.get("redirect_uri", ""),
                    code_verifier=params.get("code_verifier", ""),
                )
            elif grant_type == "refresh_token":
                tokens = emulator.refresh(params.get("refresh_token", ""))
            else:
                return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        except InvalidGrant as exc:
            return _oauth_error(400, exc.error, exc.reason)
        body = tokens.as_json(api_url=str(request.url.origin()))
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        """``POST /oauth/revoke``: end the grant of the token in the query or form."""
        if not self._client_authenticated(request):
            return _invalid_client()
        token = (await _params(request)).get("token")
        if not token:
            return _oauth_error(400, "invalid_request", "Missing token")
        self._emulator.revoke(token)
        return web.json_response({"status": "success"})

    def _parse_authorize(self, params: Mapping[str, str]) -> _AuthorizeRequest:
        if params.get("client_id") != self._emulator.client_id:
            raise _BadAuthorize("Invalid client_id.")
        redirect_uri = params.get("redirect_uri", "")
        if not self._emulator.redirect_uri_allowed(redirect_uri):
            raise _BadAuthorize("Invalid redirect_uri.")
        if params.get("response_type") != "code":
            raise _BadAuthorize("response_type must be code.")
        if params.get("code_challenge_method") != "S256":
            raise _BadAuthorize("code_challenge_method must be S256.")
        challenge = params.get("code_challenge", "")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise _BadAuthorize("code_challenge must be an S256 challenge.")
        return _AuthorizeRequest(
            params["client_id"], redirect_uri, challenge, params.get("state"), params.get("scope")
        )

    def _approve(self, ask: _AuthorizeRequest) -> str:
        code = self._emulator.issue_code(
            redirect_uri=ask.redirect_uri, code_challenge=ask.code_challenge, scope=ask.scope
        )
        params = {"code": code}
        if ask.state is not None:
            params["state"] = ask.state
        return _with_query(ask.redirect_uri, params)

    def _client_authenticated(self, request: web.Request, *, service: bool = False) -> bool:
        """Whether Basic auth names the user app, or with *service* the S2S app."""
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return False
        if service:
            return self._emulator.service_client_matches(*credentials)
        return self._emulator.client_matches(*credentials)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from an ``Authorization: Basic`` value, else None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else None


def _invalid_client() -> web.Response:
    return _oauth_error(401, "invalid_client", "Invalid client_id or client_secret")


async def _params(request: web.Request) -> dict[str, str]:
    """Query and form parameters merged, the form winning, as Zoom accepts both."""
    form = await request.post()
    merged = dict(request.query)
    merged.update((k, v) for k, v in form.items() if isinstance(v, str))
    return merged
