"""Pure checks on untrusted request input: redirect targets, API paths, origins.

Threat model. Every value here comes from a client we do not trust:

- ``next`` after sign-in is an open-redirect vector. A phishing link
  ``/auth/login?next=//evil.example`` would bounce a freshly signed-in user to a page
  that looks like ours. Browsers are lenient: they treat ``\\`` as ``/``, drop tab, CR
  and LF anywhere in a URL, and trim control characters and spaces at its ends; other
  layers (ours, a front proxy, a later redirect) may percent-decode the value again.
  So a target is accepted only if it is a plain local path in its raw form *and* in
  every form that decoding could turn it into.
- ``/api/<path>`` is forwarded byte for byte under ``api_base_url``. A path that
  climbs out of that prefix once decoded (``..``, ``%2e%2e``, ``..;``) or that routes
  differently upstream (empty segments, encoded slashes, backslashes) could reach an
  endpoint the user never meant to call with their token.
- A cross-origin page can make the browser send the session cookie with a form post
  (CSRF). Unsafe methods are refused when ``Origin`` or ``Sec-Fetch-Site`` shows such
  a request from an origin that is not explicitly allowed.

Nothing here does I/O or knows about aiohttp, so the handlers stay thin and these
rules are tested exhaustively on their own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from urllib.parse import unquote, unquote_to_bytes

MAX_NEXT_LENGTH = 2048
"""Longer ``next`` values are replaced by ``/``: no legitimate page needs more."""

_MAX_DECODE_ROUNDS = 4
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ORIGIN_RE = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)
_BAD_PERCENT_RE = re.compile(r"%(?![0-9a-fA-F]{2})")
_CROSS_ORIGIN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def safe_next(raw: str | None) -> str:
    """Return ``raw`` if it is a local path on this proxy, else ``"/"``.

    >>> safe_next("/meetings?type=live")
    '/meetings?type=live'
    >>> safe_next("//evil.example")
    '/'

    A value that starts with exactly one ``/`` followed by something other than ``/``
    or ``\\`` is a path-absolute reference: it has no scheme (a scheme starts with a
    letter) and no authority (that needs ``//``), so a later ``:`` or ``@`` is an
    ordinary path or query character and cannot become a scheme or userinfo. The rest
    of the checks make sure no browser leniency or decoding step can turn it into
    anything else.
    """
    if raw is None or len(raw) > MAX_NEXT_LENGTH:
        return "/"
    if any(_is_bad_char(c) or c == " " for c in raw):
        return "/"
    forms = _decoded_forms(raw)
    # "//" anywhere ("/https://evil", "/x?u=//evil") is how a target re-emerges from a
    # naive prefix strip or a second redirect. Only the first decoding is checked for it:
    # Zoom's double-encoded meeting UUIDs ("%252F%252F") legitimately decode to "//".
    # The proxy's own /download keeps its query (SPEC 13: its url= is a URL), since the
    # proxy never redirects to what that query holds.
    if forms is None or any("//" in (_path_of_download(form) or form) for form in forms[:2]):
        return "/"
    forms += [unicodedata.normalize("NFKC", form) for form in forms]
    if all(_is_local_path(form) for form in forms):
        return raw
    return "/"


def _path_of_download(form: str) -> str | None:
    """The path of a ``/download?...`` target, else None."""
    path, question, _ = form.partition("?")
    return path if question and path == "/download" else None


def is_safe_api_path(raw_path: str) -> bool:
    """Whether the still-encoded path after ``/api/`` may be forwarded upstream.

    >>> is_safe_api_path("meetings/%252FajXp%253D%253D/recordings")
    True
    >>> is_safe_api_path("past_meetings/Gx3Zp9%2FkQ0a1b2c3d4e5f6%3D%3D")
    True
    >>> is_safe_api_path("users/%2e%2e/admin")
    False
    >>> is_safe_api_path("users/..%2Fadmin")
    False

    Judged on the path as one percent-decoding makes it, where an encoded ``%2F``
    separates segments like a ``/``: no segment may be empty, ``.`` or ``..`` (also
    with ``;`` parameters, which some servers strip before resolving dot segments), and
    no backslash or control character may appear. One trailing ``/`` is allowed, since
    it adds no segment.

    A ``%2F`` inside a segment is not refused by itself: Zoom asks clients to encode a
    meeting UUID with one ``/`` in the middle once (``encodeURIComponent`` does), and to
    double-encode only one that begins with ``/`` or holds ``//``. Whatever a gateway
    upstream makes of a ``%2F``, decoded or not, it cannot climb out of the base path or
    reach an empty segment, since neither form has one.
    """
    if not raw_path or _BAD_PERCENT_RE.search(raw_path):
        return False
    decoded = unquote_to_bytes(raw_path)
    if any(b < 0x20 or b == 0x7F or b == 0x5C for b in decoded):
        return False
    segments = decoded.removesuffix(b"/").split(b"/")
    return all(segment and segment.split(b";")[0] not in (b".", b"..") for segment in segments)


def normalize_origin(value: str) -> str | None:
    """Return ``value`` as lower-case ``scheme://host[:port]``, or None if it is not one.

    >>> normalize_origin("HTTPS://Example.COM:443")
    'https://example.com'

    Only http and https are origins here; ``null``, paths, userinfo and anything
    else give None.
    """
    match = _ORIGIN_RE.fullmatch(value)
    if match is None:
        return None
    scheme, host, port = match["scheme"].lower(), match["host"].lower(), match["port"]
    if port is not None:
        if int(port) > 65535:
            return None
        port = str(int(port))
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def is_cross_origin_request(
    *,
    sec_fetch_site: str | None,
    origin: str | None,
    own_origin: str,
    allowed_origins: Collection[str],
) -> bool:
    """Whether a browser sent this request for another, not allowed, origin.

    ``own_origin`` and ``allowed_origins`` must already be normalized. ``Origin``
    decides when present (an unparseable one such as ``null`` is cross-origin);
    otherwise ``Sec-Fetch-Site`` does, where ``same-site`` (another port or subdomain)
    still counts as cross-origin. A request with neither header is not a browser's
    cross-origin request (curl, servers) and passes.
    """
    if origin is not None:
        normalized = normalize_origin(origin)
        return normalized is None or (
            normalized != own_origin and normalized not in allowed_origins
        )
    if sec_fetch_site is not None:
        return sec_fetch_site.strip().lower() in _CROSS_ORIGIN_FETCH_SITES
    return False


def cors_origin(origin: str | None, allowed_origins: Collection[str]) -> str | None:
    """The origin to echo in ``Access-Control-Allow-Origin``, or None if not allowed.

    Never ``*``: responses carry credentials, which a wildcard would forbid anyway.
    """
    if origin is None:
        return None
    normalized = normalize_origin(origin)
    return normalized if normalized in allowed_origins else None


def _is_bad_char(c: str) -> bool:
    # Browsers drop tab/CR/LF inside URLs and trim controls and spaces at the ends,
    # which can turn "/\t/evil" into "//evil"; CR/LF would also split a header.
    return c == "\\" or unicodedata.category(c) == "Cc" or (c.isspace() and c != " ")


def _decoded_forms(raw: str) -> list[str] | None:
    """``raw`` and each successive percent-decoding of it, or None if it never settles."""
    forms = [raw]
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            return forms
        forms.append(decoded)
    return None


def _is_local_path(form: str) -> bool:
    # A decoded space is fine ("?q=%20"); a raw one was already refused by the caller.
    if not form.startswith("/") or form[1:2] in ("/", "\\"):
        return False
    if any(_is_bad_char(c) for c in form):
        return False
    path = re.split(r"[?#]", form, maxsplit=1)[0]
    return all(segment.split(";")[0] not in (".", "..") for segment in path.split("/"))
