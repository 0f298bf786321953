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

from proxy.errors import (
    WWW_AUTHENTICATE,
    ProxyError,
    RefreshRejected,
    Unauthenticated,
    error_answer,
)
from proxy.observe.logs import redacted_target
from proxy.web.keys import SETTINGS, STORAGE
from proxy.web.pages import HOME, message_page, sign_out_page

log = logging.getLogger(__name__)

#: ``Set-Cookie`` values every answer to a request carries, an error's included: a
#: refreshed session's cookie (Zoom has already spent the old refresh token).
SET_COOKIES: web.RequestKey[list[str]] = web.RequestKey("set_cookies")
_AIOHTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    431: "headers_too_large",
}
#: Pages for a browser's GET of an address that only takes POST: what it is, and a
#: button that POSTs (a GET must never act).
_GET_PAGES: dict[str, Callable[[], str]] = {"/auth/logout": sign_out_page}


def is_browser_navigation(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def login_url(public_url: str, next_path: str | None = None) -> str:
    if next_path is None:
        return f"{public_url}/auth/login"
    return f"{public_url}/auth/login?{urlencode({'next': next_path})}"


def render_error(request: web.Request, error: ProxyError) -> web.Response:
    """The response for ``error``; for a refused refresh it also ends the session."""
    # /api/* and /download navigations go to sign-in and come back.
    api = request.path.startswith("/api/") or request.path == "/download"
    login = login_url(request.app[SETTINGS].public_url, request.raw_path if api else None)
    if not is_browser_navigation(request):
        answer = error_answer(error, login)
        response = web.Response(status=answer.status, headers=answer.headers, body=answer.body)
    elif not isinstance(error, Unauthenticated):
        response = _render(request, error.status, error.code, error.message)
    elif api:  # ``/api/*`` navigations go to sign-in and come back
        response = web.Response(
            status=302, headers={"Location": login, "Cache-Control": "no-store"}
        )
    else:
        response = web.Response(
            status=401,
            text=message_page("Signed out", error.message, link=login, label="Sign in with Zoom"),
            content_type="text/html",
            headers={"WWW-Authenticate": WWW_AUTHENTICATE, "Cache-Control": "no-store"},
        )
    for value in request.app[STORAGE].answer_cookies(
        request.get(SET_COOKIES, ()),
        ends_session=isinstance(error, RefreshRejected),
        cookie_header=request.headers.get("Cookie", ""),
        forwarded_proto=request.headers.get("X-Forwarded-Proto"),
    ):
        response.headers.add("Set-Cookie", value)
    return response


def _render(
    request: web.Request, status: int, code: str, message: str, *, allow: str = ""
) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if is_browser_navigation(request):
        return web.Response(
            status=status,
            text=_error_page(request, status, message, allow),
            content_type="text/html",
            headers=headers,
        )
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _error_page(request: web.Request, status: int, message: str, allow: str) -> str:
    """What happened and what to do about it, for a person; ``allow``: the methods an
    address takes, for a 405."""
    if status == 404:
        return message_page(
            "Page not found",
            "There is no page at this address.",
            link=HOME,
            label="Go to the home page",
        )
    if status == 405:
        methods = _either([m.strip() for m in allow.split(",") if m.strip()])
        takes = f"takes only {methods} requests" if methods else "takes other requests"
        return message_page(
            "Method not allowed",
            f"This address {takes}, not {request.method}.",
            link=HOME,
            label="Go to the home page",
        )
    if request.path.startswith("/auth/"):
        return message_page("Sign-in problem", message, link="/auth/login", label="Start again")
    if status >= 500:
        # An empty link is this very address: worth another try once the cause passes.
        return message_page("Something went wrong", message, link="", label="Try again")
    return message_page("Request refused", message, link=HOME, label="Go to the home page")


def _either(items: list[str]) -> str:
    """``A``, ``A or B``, ``A, B or C``."""
    return " or ".join([", ".join(items[:-1]), items[-1]] if len(items) > 2 else items)


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
            get_page = _GET_PAGES.get(request.path)
            if exc.status == 405 and get_page is not None and is_browser_navigation(request):
                return web.Response(
                    text=get_page(), content_type="text/html", headers={"Cache-Control": "no-store"}
                )
            code = _AIOHTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "error")
            allow = exc.headers.get("Allow", "")
            response = _render(request, exc.status, code, exc.reason, allow=allow)
            if allow:
                response.headers["Allow"] = allow
            return response
        except Exception:
            log.exception(
                "unexpected error handling %s %s", request.method, redacted_target(request.raw_path)
            )
            return _render(request, 500, "internal_error", "The proxy failed; this is a bug.")

    return middleware
