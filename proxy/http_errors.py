"""Translating :mod:`proxy.errors` (and aiohttp's own HTTP errors) into responses.

This is the one place where an error becomes HTTP: JSON ``{"error", "message"}`` for
scripts, a small HTML page for a browser navigation, and for an unauthenticated
browser navigation a redirect to sign-in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import ProxyError, RefreshRejected, Unauthenticated
from .keys import SETTINGS, STORAGE
from .logs import redacted_target
from .pages import message_page

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Cookie realm="zoom-proxy", login="/auth/login"'
_AIOHTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    431: "headers_too_large",
}


def is_browser_navigation(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def login_url(request: web.Request, next_path: str | None = None) -> str:
    public_url = request.app[SETTINGS].public_url
    if next_path is None:
        return f"{public_url}/auth/login"
    return f"{public_url}/auth/login?{urlencode({'next': next_path})}"


def render_error(request: web.Request, error: ProxyError) -> web.Response:
    """The response for ``error``; for a refused refresh it also ends the session."""
    if isinstance(error, Unauthenticated):
        response = _unauthenticated(request, error)
        if isinstance(error, RefreshRejected):
            request.app[STORAGE].write_cookies(request, response, "")
        return response
    return _render(request, error.status, error.code, error.message)


def _unauthenticated(request: web.Request, error: Unauthenticated) -> web.Response:
    """``/api/*`` navigations go to sign-in and come back; everything else gets a 401."""
    api = request.path.startswith("/api/")
    url = login_url(request, request.raw_path if api else None)
    if is_browser_navigation(request):
        if api:
            return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
        return web.Response(
            status=401,
            text=message_page("Signed out", error.message, link=url, label="Sign in with Zoom"),
            content_type="text/html",
            headers={"WWW-Authenticate": WWW_AUTHENTICATE, "Cache-Control": "no-store"},
        )
    return web.json_response(
        {"error": error.code, "message": error.message, "login_url": url},
        status=401,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE, "Cache-Control": "no-store"},
    )


def _render(request: web.Request, status: int, code: str, message: str) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if is_browser_navigation(request):
        title = "Sign-in problem" if request.path.startswith("/auth/") else "zoom-proxy"
        return web.Response(
            status=status,
            text=message_page(title, message, link="/auth/login", label="Start again"),
            content_type="text/html",
            headers=headers,
        )
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def log_refusal(method: str, raw_target: str, error: ProxyError) -> None:
    log.info("%s %s: %d %s", method, redacted_target(raw_target), error.status, error.code)


#: A check before the handler: an early answer, ``None`` to go on, or a ProxyError.
Screen = Callable[[web.Request], web.StreamResponse | None]


def error_middleware(screen: Screen) -> Middleware:
    """``screen`` each request, then run its handler; every error becomes HTTP here.

    The screen runs inside the translation (so what it raises is rendered like any
    error) rather than as a middleware of its own, which would be one more coroutine
    frame on every request.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            early = screen(request)
            return early if early is not None else await handler(request)
        except ProxyError as error:
            log_refusal(request.method, request.raw_path, error)
            return render_error(request, error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _AIOHTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "error")
            response = _render(request, exc.status, code, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception(
                "unexpected error handling %s %s", request.method, redacted_target(request.raw_path)
            )
            return _render(request, 500, "internal_error", "The proxy failed; this is a bug.")

    return middleware
