"""``/auth/*``: signing in with Zoom, signing out, and telling a client who it is."""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.fernet import InvalidToken

from proxy.errors import (
    AccessDenied,
    BadRequest,
    LoginStateInvalid,
    ProxyError,
    SessionRevoked,
    SessionStoreUnavailable,
    Unauthenticated,
)
from proxy.observe.metrics import METRICS
from proxy.session.model import SessionData
from proxy.session.rules import may_sign_in
from proxy.session.store import SignedIn
from proxy.tokens.oauth import random_token
from proxy.web.cors import is_same_origin_or_direct
from proxy.web.errors import is_browser_navigation, render_error
from proxy.web.keys import FERNET, OAUTH, SESSIONS, SETTINGS, STORAGE
from proxy.web.pages import message_page
from proxy.web.untrusted import safe_next

log = logging.getLogger(__name__)

#: The login-state cookie lives long enough to sign in at Zoom, and no longer.
LOGIN_STATE_MAX_AGE = 600
_LOGIN_PATH = "/auth/"


@dataclass(frozen=True, slots=True)
class LoginState:
    """What binds a callback to the browser that started sign-in."""

    state: str
    verifier: str
    next: str


def _login_cookie_name(request: web.Request) -> str:
    return f"{request.app[SETTINGS].session.cookie_name}_login"


def _set_login_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    """Set (or with an empty ``value``, expire) the login-state cookie."""
    name = _login_cookie_name(request)
    secure = request.app[STORAGE].secure(request.headers.get("X-Forwarded-Proto"))
    if value:
        response.set_cookie(
            name,
            value,
            max_age=LOGIN_STATE_MAX_AGE,
            path=_LOGIN_PATH,
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
    else:
        response.del_cookie(name, path=_LOGIN_PATH, secure=secure, httponly=True, samesite="Lax")


def _read_login_state(request: web.Request) -> LoginState | None:
    value = request.cookies.get(_login_cookie_name(request))
    if not value:
        return None
    try:
        data = json.loads(
            request.app[FERNET].decrypt(value.encode("ascii"), ttl=LOGIN_STATE_MAX_AGE)
        )
        return LoginState(
            state=str(data["state"]), verifier=str(data["verifier"]), next=safe_next(data["next"])
        )
    except (InvalidToken, UnicodeError, ValueError, KeyError, TypeError):
        return None


async def login(request: web.Request) -> web.Response:
    """``GET /auth/login?next=PATH``: off to Zoom, with state and PKCE bound to this browser."""
    state = LoginState(
        state=random_token(), verifier=random_token(), next=safe_next(request.query.get("next"))
    )
    location = request.app[OAUTH].authorize_redirect(state=state.state, verifier=state.verifier)
    response = web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
    sealed = request.app[FERNET].encrypt(
        json.dumps({"state": state.state, "verifier": state.verifier, "next": state.next}).encode()
    )
    _set_login_cookie(request, response, sealed.decode("ascii"))
    return response


async def callback(request: web.Request) -> web.Response:
    """``GET /auth/callback``: check the state first, then exchange the code."""
    count = request.app[METRICS].count_sign_in
    query = request.query
    if "error" in query:
        count("declined")
        declined = _declined(request, query.get("error", ""))
        _set_login_cookie(request, declined, "")
        return declined
    code = query.get("code")
    if code and "state" not in query:
        # Installed from the Zoom Marketplace: no state to check, so never trust the
        # code; a fresh sign-in from this browser gets one with a state.
        count("restarted")
        return web.Response(
            status=302, headers={"Location": "/auth/login", "Cache-Control": "no-store"}
        )
    if not code:
        count("bad_request")
        raise BadRequest("The callback lacks an authorization code. Start sign-in again.")
    expected = _read_login_state(request)
    if expected is None or not hmac.compare_digest(
        expected.state.encode(), query["state"].encode()
    ):
        count("invalid_state")
        raise LoginStateInvalid()
    try:
        response = await _complete_sign_in(request, code, expected)
        count("ok")
    except ProxyError as error:
        count(error.code)
        response = render_error(request, error)
    _set_login_cookie(request, response, "")
    return response


async def _complete_sign_in(
    request: web.Request, code: str, login_state: LoginState
) -> web.Response:
    oauth = request.app[OAUTH]
    tokens = await oauth.exchange_code(code, verifier=login_state.verifier)
    user = await oauth.fetch_user(tokens.access_token)
    if not may_sign_in(user, request.app[SETTINGS].access):
        log.warning("sign-in refused by access rules for Zoom user %s", user.id)
        await oauth.revoke(tokens.refresh_token)
        raise AccessDenied()
    try:
        await request.app[SESSIONS].start(
            request, SessionData(tokens=tokens, user=user, signed_in_at=time.time())
        )
    except SessionStoreUnavailable:
        await oauth.revoke(tokens.refresh_token)  # nowhere to keep them: leave none behind
        raise
    log.info("Zoom user %s signed in", user.id)
    return web.Response(
        status=302, headers={"Location": login_state.next, "Cache-Control": "no-store"}
    )


def _declined(request: web.Request, error: str) -> web.Response:
    if error == "access_denied":
        title, message = (
            "Sign-in cancelled",
            "You chose not to allow access at Zoom. Nothing was stored.",
        )
    else:
        title, message = "Sign-in failed", "Zoom reported a problem with this sign-in."
    if not is_browser_navigation(request):
        return web.json_response({"error": "access_denied", "message": message}, status=403)
    return web.Response(
        status=403, text=message_page(title, message, label="Try again"), content_type="text/html"
    )


async def page_session(request: web.Request) -> SignedIn | None:
    """The session, for a route that serves the signed-out too: one that was revoked
    (the user removed the app) is ended here, its cookie cleared, and counts as none."""
    sessions = request.app[SESSIONS]
    try:
        return await sessions.load(request.headers.get("Cookie", ""))
    except SessionRevoked:
        await sessions.end(request, None)
        return None


async def logout(request: web.Request) -> web.Response:
    """``POST /auth/logout``: revoke at Zoom (best effort) and forget the session.

    A browser's ``GET`` gets a page whose button POSTs here (see
    :mod:`proxy.web.errors`); a GET never signs anyone out. The form's POST, like any
    browser's, is redirected to the home page; a script's gets 204."""
    sessions = request.app[SESSIONS]
    signed_in = await page_session(request)
    # Forgotten first: if that fails, nothing has happened and a retry is safe.
    await sessions.end(request, signed_in)
    if signed_in is not None:
        await request.app[OAUTH].revoke(signed_in.data.tokens.refresh_token)
        log.info("Zoom user %s signed out", signed_in.data.user.id)
    if _wants_redirect(request):
        return web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def _wants_redirect(request: web.Request) -> bool:
    form_types = ("application/x-www-form-urlencoded", "multipart/form-data")
    return request.content_type in form_types or "text/html" in request.headers.get("Accept", "")


async def me(request: web.Request) -> web.Response:
    """``GET /auth/me``: who is signed in and until when; never a token."""
    session_data = await _signed_in(request)
    user, tokens = session_data.user, session_data.tokens
    return web.json_response(
        {
            "user": {
                "id": user.id,
                "email": user.email,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "account_id": user.account_id,
            },
            "expires_at": int(tokens.expires_at),
            "scope": tokens.scope,
        },
        headers={"Cache-Control": "no-store"},
    )


async def cookiejar(request: web.Request) -> web.Response:
    """``GET /auth/cookiejar``: this browser's session as a Netscape cookie jar for curl."""
    if not is_same_origin_or_direct(request):
        raise AccessDenied("The cookie jar is only handed to this proxy's own pages or to curl.")
    await _signed_in(request)
    settings = request.app[SETTINGS]
    storage = request.app[STORAGE]
    host = urlsplit(settings.public_url).hostname or "localhost"
    secure = "TRUE" if settings.session.cookie_secure else "FALSE"
    expires = int(time.time()) + settings.session.max_age
    lines = ["# Netscape HTTP Cookie File", "# zoom-proxy session: keep it secret like a password."]
    for name, value in storage.chunks(request.headers.get("Cookie", "")):
        lines.append(f"#HttpOnly_{host}\tFALSE\t/\t{secure}\t{expires}\t{name}\t{value}")
    return web.Response(
        text="\n".join(lines) + "\n",
        content_type="text/plain",
        headers={
            "Content-Disposition": 'attachment; filename="zoom-jar.txt"',
            "Cache-Control": "no-store",
        },
    )


async def _signed_in(request: web.Request) -> SessionData:
    signed_in = await request.app[SESSIONS].load(request.headers.get("Cookie", ""))
    if signed_in is None:
        raise Unauthenticated()
    return signed_in.data
