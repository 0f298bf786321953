"""Which recording ``download_url`` the proxy may fetch with a user's token (SPEC 13).

The proxy sends a Bearer token to the first URL of a download, so that URL is an SSRF
and token-leak surface. It is parsed strictly, by hand, rather than with a URL library
that would repair it: whatever a library would guess at (a backslash, a missing
slash, an ``@`` in the authority, a Unicode host) is refused instead.

A URL is accepted only when it is absolute (``scheme://authority/path``); has no
userinfo, no fragment, no whitespace, control or non-ASCII character (an encoded one
included); its origin matches an entry of ``zoom.download_origins``, where ``*.``
stands for one or more whole labels (so ``https://*.zoom.us`` matches
``https://acme.zoom.us`` but neither ``https://evil-zoom.us`` nor
``https://zoom.us.evil.test``), and ports must match exactly (the scheme's default when
none is given); and its path, with dot segments resolved, starts with ``/rec/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from proxy.errors import BadDownloadUrl

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: scheme://host[:port] then the rest: an authority holds no '/', '\', '?', '#' or '@'.
_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[^?#]*)(?:\?(?P<query>[^#]*))?",
    re.IGNORECASE,
)
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: What may appear in a path or query at all: printable ASCII without space or backslash.
_UNSAFE = re.compile(r"[^\x21-\x7e]|\\")


@dataclass(frozen=True, slots=True)
class Origin:
    """One entry of ``zoom.download_origins``: a scheme, a host (``*.`` + a suffix for
    any subdomain) and a port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = self.port == _DEFAULT_PORTS[self.scheme]
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if (scheme, port) != (self.scheme, self.port):
            return False
        if self.wildcard:
            suffix = self.host[1:]  # ".zoom.us"
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def parse_origin(text: str) -> Origin:
    """An entry of ``zoom.download_origins``; :class:`ValueError` saying what is wrong."""
    match = re.fullmatch(r"(https?)://((?:\*\.)?[a-z0-9.-]+)(?::([0-9]{1,5}))?", text.lower())
    if match is None:
        raise ValueError("write an origin as https://host, https://*.domain or http://host:port")
    scheme, host, port = match.groups()
    if not _is_host(host.removeprefix("*.")):
        raise ValueError(f"{host!r} is not a host name")
    return Origin(scheme, host, int(port) if port else _DEFAULT_PORTS[scheme])


@dataclass(frozen=True, slots=True)
class DownloadUrl:
    """A first URL the proxy may fetch with the user's token."""

    url: str
    origin: str


def checked_download_url(url: str, origins: Iterable[Origin]) -> DownloadUrl:
    """``url`` if the proxy may fetch it with a token, else :class:`BadDownloadUrl`."""
    if _UNSAFE.search(url) or _UNSAFE.search(unquote(url)):
        raise BadDownloadUrl()
    match = _URL.fullmatch(url)
    if match is None:
        raise BadDownloadUrl()
    own = _origin_on(match, origins)
    path = match["path"]
    if own is None or not all(_resolved(p).startswith("/rec/") for p in (path, unquote(path))):
        raise BadDownloadUrl()
    return DownloadUrl(url, str(own))


def matches_any(url: str, origins: Iterable[Origin]) -> bool:
    """Whether a redirect's target ``url`` is on one of ``origins`` (so it may carry the
    token): the same strict parse, any path."""
    match = _URL.fullmatch(url)
    return match is not None and _origin_on(match, origins) is not None


def _origin_on(match: re.Match[str], origins: Iterable[Origin]) -> Origin | None:
    """The origin of a URL ``_URL`` matched, if it is a host name on one of ``origins``."""
    scheme, host = match["scheme"].lower(), match["host"].lower()
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[scheme]
    if not _is_host(host) or not any(o.matches(scheme, host, port) for o in origins):
        return None
    return Origin(scheme, host, port)


def _is_host(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _resolved(path: str) -> str:
    """``path`` with its dot segments resolved (RFC 3986, 5.2.4)."""
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    return "/" + "/".join(out)
