"""Which headers cross the proxy, each way.

Towards Zoom: the client's headers minus hop-by-hop ones, the proxy's own cookies, the
client's credentials and Host, and (unless a trusted front proxy set them) forwarding
headers; plus the session's bearer token. Towards the client: Zoom's headers minus
hop-by-hop ones, its cookies and its CORS.

The verdict on a header name is cached: clients and Zoom send the same few names
over and over, and lower-casing and matching each one on every request showed in the
profile. The caches are bounded, so a flood of invented names cannot grow them.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

#: RFC 9110 section 7.6.1, plus the non-standard ``Proxy-Connection`` still sent by some clients.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Never forwarded to Zoom: the proxy's own cookies, the client's credentials, its Host;
#: the body's framing, which the upstream client sets for the body it sends.
_DROPPED_REQUEST = HOP_BY_HOP | {"cookie", "host", "authorization", "expect", "content-length"}
_FORWARDED = frozenset({"forwarded", "x-real-ip"})
#: Zoom's cookies are never the client's; CORS (``access-control-*``) is the proxy's to
#: decide, through ``cors.allowed_origins``, never Zoom's.
_DROPPED_RESPONSE = HOP_BY_HOP | {"set-cookie"}
#: Names remembered per direction.
NAMES_CACHED = 1024

_KEEP, _FORWARDING, _DROP = 0, 1, 2


class _RequestVerdicts(dict[str, int]):
    """A request header name, as the client spelled it, to keep, forwarding or drop."""

    def __missing__(self, name: str) -> int:
        lower = name.lower()
        # An underscore: some servers read X_Auth as X-Auth, past these filters.
        if lower in _DROPPED_REQUEST or "_" in lower:
            verdict = _DROP
        elif lower in _FORWARDED or lower.startswith("x-forwarded-"):
            verdict = _FORWARDING
        else:
            verdict = _KEEP
        if len(self) < NAMES_CACHED:
            self[name] = verdict
        return verdict


class _ResponseNames(dict[bytes, str | None]):
    """A response header name as Zoom sent it to the name passed on, ``None`` to drop it,
    or ``""`` for ``Connection`` (dropped, and it may name more headers to drop)."""

    def __missing__(self, raw: bytes) -> str | None:
        lower = raw.decode("latin-1").lower()
        name: str | None = raw.decode("latin-1")
        if lower == "connection":
            name = ""
        elif lower in _DROPPED_RESPONSE or lower.startswith("access-control-"):
            name = None
        if len(self) < NAMES_CACHED:
            self[raw] = name
        return name


_REQUEST_VERDICTS = _RequestVerdicts()
_RESPONSE_NAMES = _ResponseNames()


def _named_in(values: Iterable[str]) -> set[str]:
    """Headers a ``Connection`` header names (hop-by-hop for this one connection)."""
    return {token.strip().lower() for value in values for token in value.split(",")}


def request_headers_for_zoom(
    headers: CIMultiDictProxy[str], *, access_token: str, trust_forwarded: bool
) -> list[tuple[str, str]]:
    """The client's headers minus everything Zoom must not see, plus the bearer token."""
    return headers_for_zoom(
        headers.items(),
        headers.getall("Connection", ()),
        access_token=access_token,
        trust_forwarded=trust_forwarded,
    )


def headers_for_zoom(
    headers: Iterable[tuple[str, str]],
    connection: Iterable[str],
    *,
    access_token: str,
    trust_forwarded: bool,
) -> list[tuple[str, str]]:
    """As :func:`request_headers_for_zoom`, from the client's headers in order and its
    ``Connection`` header's values."""
    verdicts = _REQUEST_VERDICTS
    limit = _DROP if trust_forwarded else _FORWARDING
    result = [(name, value) for name, value in headers if verdicts[name] < limit]
    if connection and (named := _named_in(connection)):
        result = [(name, value) for name, value in result if name.lower() not in named]
    result.append(("Authorization", f"Bearer {access_token}"))
    return result


def response_headers_for_client(headers: Iterable[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """Zoom's headers (raw, as received) minus hop-by-hop ones, its cookies and its CORS."""
    return CIMultiDict(headers_for_client(headers))


def headers_for_client(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """As :func:`response_headers_for_client`, in order, as (name, value) pairs."""
    names = _RESPONSE_NAMES
    kept: list[tuple[str, str]] = []
    connection: list[str] = []
    for raw_name, raw_value in headers:
        name = names[raw_name]
        if name:
            kept.append((name, raw_value.decode("utf-8", "surrogateescape")))
        elif name is not None:
            connection.append(raw_value.decode("latin-1"))
    if connection:
        named = _named_in(connection) - HOP_BY_HOP
        if named:
            kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept
