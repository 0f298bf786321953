"""Cross-origin protection and CORS for ``/api/*`` and ``/auth/*`` (the README, "Using
it from a frontend")."""

from __future__ import annotations

from aiohttp import web

from proxy.errors import CrossOriginRefused
from proxy.http.methods import UNSAFE_METHODS
from proxy.web.keys import SETTINGS
from proxy.web.untrusted import cors_origin, is_cross_origin_request, normalize_origin

_CORS_PREFIXES = ("/api/", "/auth/")
_PREFLIGHT_MAX_AGE = "600"


def own_origin(public_url: str) -> str:
    origin = normalize_origin(public_url)
    if origin is None:
        raise ValueError("public_url is not an origin")
    return origin


def _guarded(request: web.Request) -> bool:
    path = request.path
    return path.startswith("/api/") or path == "/auth/logout"


def is_cross_origin(request: web.Request) -> bool:
    """Whether a browser sent this from an origin that is neither ours nor allowed."""
    settings = request.app[SETTINGS]
    return is_cross_origin_request(
        sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
        origin=request.headers.get("Origin"),
        own_origin=own_origin(settings.public_url),
        allowed_origins=settings.cors.allowed_origins,
    )


def is_same_origin_or_direct(request: web.Request) -> bool:
    """Strictly our own pages or a non-browser client; ``cors.allowed_origins`` do not count."""
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    own = own_origin(request.app[SETTINGS].public_url)
    return (origin is None or normalize_origin(origin) == own) and fetch_site in (
        None,
        "none",
        "same-origin",
    )


def screen_origin(request: web.Request) -> web.Response | None:
    """Before any work: answer a CORS preflight, refuse a cross-origin unsafe request
    (:class:`CrossOriginRefused`), or ``None`` to go on."""
    if _is_preflight(request):
        return _preflight(request)
    if request.method in UNSAFE_METHODS and _guarded(request) and is_cross_origin(request):
        raise CrossOriginRefused()
    return None


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
        and request.path.startswith(_CORS_PREFIXES)
    )


def _preflight(request: web.Request) -> web.Response:
    allowed = cors_origin(request.headers.get("Origin"), request.app[SETTINGS].cors.allowed_origins)
    if allowed is None:
        raise CrossOriginRefused("This origin is not allowed. Add it to cors.allowed_origins.")
    headers = {
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return web.Response(status=204, headers=headers)


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CORS headers for an allowed origin, on every answer: error answers (401, 403)
    too, so the frontend can read why it was refused."""
    if not request.path.startswith(_CORS_PREFIXES):
        return
    response.headers.add("Vary", "Origin")
    allowed = cors_origin(request.headers.get("Origin"), request.app[SETTINGS].cors.allowed_origins)
    if allowed is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"
