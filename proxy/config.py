"""Load and validate zoom-proxy's configuration.

The configuration is one YAML mapping, read from ``config.yaml`` in the working
directory, from the file named by ``$ZOOM_PROXY_CONFIG``, or from an explicit path::

    listen: {host: 0.0.0.0, port: 8080, shutdown_timeout: 10}
    public_url: http://localhost:8080
    trust_forwarded_headers: false
    zoom: {client_id: "${ZOOM_CLIENT_ID}", client_secret: "${ZOOM_CLIENT_SECRET}", ...}
    session: {secret_keys: ["${PROXY_SESSION_KEY}"], cookie_name: zoom_proxy, store: cookie, ...}
    redis: {url: "${REDIS_URL:-}", key_prefix: "zoom-proxy:", on_unavailable: fail}
    refresh, upstream, cors, access, webhooks, logging, metrics: see the shipped config.yaml

Rules, applied in this order:

- A key given twice in one mapping, at any depth, is a problem (YAML would silently
  keep the last).
- After YAML parsing, ``${NAME}`` and ``${NAME:-default}`` are replaced in every string
  value, anywhere in the string. The default also applies when NAME is set but empty.
  An unset NAME with no default is a problem naming it, and so is any other ``${``
  (``${NAME`` with no closing ``}``, ``${NAME:default}``, ``${}``): a value that needs a
  literal ``${`` can take it from a variable, whose value is not substituted again.
- A value that is null, or an empty string after substitution, counts as absent: the
  default applies, and ``zoom.client_id``, ``zoom.client_secret`` and
  ``session.secret_keys`` (which have none) are "required". Empty entries in
  ``secret_keys`` are skipped, so ``["${NEW_KEY}", "${OLD_KEY:-}"]`` works.
- Values are then converted to their field's type (``"8080"`` to an int, ``"true"``,
  ``"yes"``, ``"on"`` or ``"1"`` to a bool) and validated. A YAML boolean is never a
  number. Unknown keys are problems, at every level, suggesting the closest known key.
- Then keys that depend on each other are checked: an ``https://`` ``public_url`` needs
  ``session.cookie_secure: true``, for instance.

Every problem is collected before :class:`ConfigError` is raised, one line each, in the
form ``dotted.key: what is wrong`` (``session.secret_keys[0]: not a valid key``). No
message ever contains a secret's value.

Example::

    settings = load_settings()          # $ZOOM_PROXY_CONFIG or config.yaml
    settings.listen.port, settings.redirect_uri
"""

import math
import os
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import suppress
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

import yaml
from cryptography.fernet import Fernet

from proxy.callers.rules import AllowRule, parse_rule
from proxy.forward.download_url import Origin, parse_origin

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_VARIABLE = "ZOOM_PROXY_CONFIG"


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that ``repr`` and ``str`` never show, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


_MASK = "**********"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A Redis URL whose password ``repr``, ``str`` and the effective config never show.

    >>> RedisURL("redis://:hunter2@redis:6379/0")
    RedisURL('redis://:**********@redis:6379/0')
    """

    value: str = field(repr=False)

    @property
    def masked(self) -> str:
        """The URL with its password (and a lone user-info part, which may be one) masked."""
        parts = urlsplit(self.value)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            hostport = f"{user}:{_MASK}@{hostport}" if colon else f"{_MASK}@{hostport}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", rf"\1\2{_MASK}", parts.query)
        return f"{parts.scheme}://{hostport}{parts.path}" + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        return f"RedisURL({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Where the server listens, how long it drains after SIGTERM, and how long a
    request's head may take to arrive once it has started (seconds)."""

    host: str = "0.0.0.0"  # noqa: S104 - in a container the proxy serves other hosts
    port: int = 8080
    shutdown_timeout: float = 10.0
    head_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class ZoomSettings:
    """The Zoom OAuth app users sign in with (none: only service callers are served), and
    Zoom's endpoints."""

    client_id: str | None = None
    client_secret: Secret | None = None
    redirect_uri: str | None = None
    authorize_url: str = "https://zoom.us/oauth/authorize"
    token_url: str = "https://zoom.us/oauth/token"
    revoke_url: str = "https://zoom.us/oauth/revoke"
    api_base_url: str = "https://api.zoom.us/v2"
    scopes: tuple[str, ...] = ()
    #: Where ``/download`` may go first, with the user's token (``*.``: any subdomain).
    download_origins: tuple[Origin, ...] = (
        Origin("https", "zoom.us", 443),
        Origin("https", "*.zoom.us", 443),
    )

    @property
    def api_origin(self) -> str:
        """``scheme://host[:port]`` of ``api_base_url``: where API calls connect."""
        parts = urlsplit(self.api_base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def api_base_path(self) -> str:
        """The still-encoded path of ``api_base_url`` (``/v2``), without a final slash."""
        return urlsplit(self.api_base_url).path.rstrip("/")


@dataclass(frozen=True, slots=True)
class CallerSettings:
    """A backend that calls Zoom as the account: its name (in logs and metrics), its
    key's SHA-256 (lower-case hex, the ``zps_`` prefix included), what it may call,
    whether it may use ``/download``, and an optional rate (burst: twice the rate)."""

    name: str
    key_sha256: str
    allow: tuple[AllowRule, ...]
    downloads: bool = False
    rate_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The Server-to-Server OAuth app that mints account tokens, and the service callers
    that use them. ``account_id`` set turns service callers on."""

    account_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    callers: tuple[CallerSettings, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.account_id is not None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """The session cookie. The first key encrypts; every key decrypts."""

    secret_keys: tuple[Secret, ...]
    cookie_name: str = "zoom_proxy"
    cookie_secure: bool = True
    cookie_samesite: str = "Lax"
    max_age: int = 7776000
    store: str = "cookie"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Redis, shared by every replica.

    With ``url`` set, refresh locks and the rotation grace are shared through it; with
    ``session.store: redis`` it also holds the sessions. ``on_unavailable`` says what a
    cookie-session replica does while Redis is unreachable: ``fail`` (503) or ``local``
    (coordinate refreshes within this replica only).
    """

    url: RedisURL | None = None
    key_prefix: str = "zoom-proxy:"
    on_unavailable: str = "fail"


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    """When to refresh (seconds before expiry) and how long a rotated token stays usable."""

    margin: float = 60.0
    rotation_grace: float = 60.0


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """Timeouts (seconds) for every call to Zoom, and the replayable body size (bytes)."""

    connect_timeout: float = 5.0
    timeout: float = 60.0
    max_replay_body: int = 1048576


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Origins allowed cross-origin, as lower-case ``scheme://host[:port]``."""

    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """Who may sign in; all empty means anyone. Emails and domains are lower-case."""

    allowed_account_ids: tuple[str, ...] = ()
    allowed_emails: tuple[str, ...] = ()
    allowed_email_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Zoom's event notifications (SPEC 14): ``POST /webhooks/zoom`` is on when the app's
    Secret Token is set."""

    secret_token: Secret | None = None
    #: Seconds an event's timestamp may differ from now, either way.
    max_skew: int = 300
    #: Where verified events are POSTed on, if anywhere.
    forward_to: str | None = None
    #: Seconds the backend has to answer 2xx; Zoom waits 3 s for the proxy's answer.
    forward_timeout: float = 2.5


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Log level (lower-case) and format (``text`` or ``json``)."""

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Whether ``/metrics`` is served."""

    enabled: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The whole validated configuration (in the order of the shipped config.yaml)."""

    zoom: ZoomSettings = field(default_factory=ZoomSettings)
    session: SessionSettings
    service: ServiceSettings = field(default_factory=ServiceSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    public_url: str = "http://localhost:8080"
    trust_forwarded_headers: bool = False
    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def users_sign_in(self) -> bool:
        """Whether users sign in (the user app is configured); else only callers."""
        return self.zoom.client_id is not None

    @property
    def redirect_uri(self) -> str:
        """Zoom's redirect URI: ``zoom.redirect_uri``, or ``<public_url>/auth/callback``."""
        return self.zoom.redirect_uri or self.public_url + "/auth/callback"


class ConfigError(Exception):
    """The configuration is unusable.

    ``problems`` holds one line per problem, ``dotted.key: what is wrong``;
    ``str()`` joins them with newlines.
    """

    problems: tuple[str, ...]

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def generate_key() -> str:
    """Return a new random session key for ``session.secret_keys``."""
    return Fernet.generate_key().decode()


# --- conversion -----------------------------------------------------------------------


class _Invalid(Exception):
    """A value failed conversion. ``problems`` are (key suffix, message) pairs."""

    def __init__(self, message: str = "", *, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(items) or (("", message),)


_Convert = Callable[[object], object]
_N = TypeVar("_N", int, float)


def _kind(value: object) -> str:
    """Name a value's type only, for places where the value may be secret."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _describe(value: object) -> str:
    return repr(value) if isinstance(value, str | int | float) else _kind(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return int(value)
    raise _Invalid(f"expected an integer, got {_describe(value)}")


def _number(value: object) -> float:
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise _Invalid(f"expected a number, got {_describe(value)}")
    return number


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower() if isinstance(value, str | int) else ""
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _Invalid(f"expected true or false, got {_describe(value)}")


def _checked(convert: Callable[[object], _N], rule: str, ok: Callable[[_N], bool]) -> _Convert:
    """``convert``, then require ``ok(result)``; ``rule`` completes "must be ..."."""

    def check(value: object) -> _N:
        result = convert(value)
        if not ok(result):
            raise _Invalid(f"must be {rule}, got {result}")
        return result

    return check


def _choice(*options: str) -> _Convert:
    """One of ``options``, case-insensitively, returned as spelled in ``options``."""
    by_lower = {option.lower(): option for option in options}

    def convert(value: object) -> str:
        text = _text(value)
        try:
            return by_lower[text.lower()]
        except KeyError:
            raise _Invalid(f"expected one of {', '.join(options)}, got {text!r}") from None

    return convert


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_http(text: str) -> tuple[SplitResult, int | None] | None:
    """``text`` split, with its port, if it is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port, as urlsplit does for bad IPv6
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts, port


def _http_url(value: object, *, query: bool = True) -> str:
    text = _text(value)
    if _split_http(text) is None:
        raise _Invalid(f"expected an absolute http(s) URL, got {text!r}")
    if "#" in text:
        raise _Invalid(f"must not contain a fragment (#...), got {text!r}")
    if not query and "?" in text:
        raise _Invalid(f"must not contain a query (?...), got {text!r}")
    return text


def _api_base_url(value: object) -> str:
    text = _http_url(value, query=False)
    if "@" in urlsplit(text).netloc:
        # It would go to Zoom in every request's Host header (and to the logs).
        raise _Invalid("must not contain a user or password (user:password@host)")
    return text.rstrip("/")


def _normal_origin(text: str, *, trailing_slash: bool = False) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if not one."""
    split = _split_http(text)
    if split is None or any(c in text for c in "?#@*"):
        return None
    parts, port = split
    if parts.path not in ("", "/" if trailing_slash else ""):
        return None
    scheme, host = parts.scheme.lower(), str(parts.hostname)
    if ":" in host:  # IPv6: urlsplit dropped the brackets
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}"


def _public_url(value: object) -> str:
    text = _text(value)
    origin = _normal_origin(text, trailing_slash=True)
    if origin is None:
        raise _Invalid(f"expected http(s)://host[:port] with no path, got {text!r}")
    return origin


def _origin(text: str) -> str:
    origin = _normal_origin(text)
    if origin is None:
        raise _Invalid(f"expected an origin http(s)://host[:port], got {text!r}")
    return origin


def _list_of(item: Callable[[str], object]) -> _Convert:
    """A list of strings, each converted by ``item``; problems name the index."""

    def convert(value: object) -> tuple[object, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"expected a list of strings, got {_describe(value)}")
        result, problems = [], []
        for index, element in enumerate(value):
            try:
                result.append(item(_text(element)))
            except _Invalid as exc:
                problems += [(f"[{index}]{suffix}", message) for suffix, message in exc.problems]
        if problems:
            raise _Invalid(items=problems)
        return tuple(result)

    return convert


def _download_origin(text: str) -> Origin:
    try:
        return parse_origin(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _not_empty(text: str) -> str:
    if not text:
        raise _Invalid("must not be empty")
    return text


def _scope(text: str) -> str:
    if not text or text.split() != [text]:
        raise _Invalid(f"expected one scope without spaces, got {text!r}")
    return text


def _scopes(value: object) -> object:
    return tuple(value.split()) if isinstance(value, str) else _list_of(_scope)(value)


def _email(text: str) -> str:
    local, _, domain = text.partition("@")
    if not local or not domain or "@" in domain:
        raise _Invalid(f"expected an email address with exactly one '@', got {text!r}")
    return text.lower()


def _email_domain(text: str) -> str:
    if not text or "@" in text:
        raise _Invalid(f"expected a domain without '@', got {text!r}")
    return text.lower()


_COOKIE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _cookie_name(value: object) -> str:
    text = _text(value)
    if not _COOKIE_NAME.fullmatch(text):
        raise _Invalid(f"expected letters, digits, '-', '_' or '.', got {text!r}")
    return text


def _secret(value: object) -> Secret:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}")
    return Secret(value)


def _is_key(text: str) -> bool:
    try:
        Fernet(text)
    except (ValueError, TypeError):
        return False
    return True


_NOT_A_KEY = "not a valid key; make one with: python -m proxy gen-key"


def _secret_keys(value: object) -> tuple[Secret, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of keys, got {_kind(value)}")
    keys, problems = [], []
    for index, element in enumerate(value):
        if element is None or element == "":
            continue  # an optional key left unset, e.g. "${OLD_KEY:-}"
        if isinstance(element, str) and _is_key(element):
            keys.append(Secret(element))
        else:
            problems.append((f"[{index}]", _NOT_A_KEY))
    if problems:
        raise _Invalid(items=problems)
    if not keys:
        raise _Invalid("required")
    return tuple(keys)


_CALLER_NAME = re.compile(r"[a-z0-9-]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CALLER_KEYS = ("name", "key_sha256", "allow", "downloads", "rate_per_second")


def _caller(value: object) -> CallerSettings:
    """One entry of ``service.callers``; problems name the key inside it."""
    if not isinstance(value, Mapping):
        raise _Invalid(f"expected a mapping, got {_kind(value)}")
    problems: list[tuple[str, str]] = [
        (f".{key}", "unknown key") for key in value if key not in _CALLER_KEYS
    ]
    name = value.get("name")
    if not isinstance(name, str) or not _CALLER_NAME.fullmatch(name):
        problems.append((".name", "required: lower-case letters, digits and -"))
    digest = value.get("key_sha256")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        problems.append(
            (
                ".key_sha256",
                "must be 64 lower-case hex digits: run python -m proxy gen-caller-key",
            )
        )
    rules: list[AllowRule] = []
    allow = value.get("allow")
    if not isinstance(allow, list) or not allow:
        problems.append((".allow", "must list at least one rule, such as 'GET /users/**'"))
    else:
        for index, text in enumerate(allow):
            try:
                rules.append(parse_rule(_text(text)))
            except _Invalid as exc:
                problems += [(f".allow[{index}]", message) for _, message in exc.problems]
            except ValueError as exc:
                problems.append((f".allow[{index}]", str(exc)))
    downloads = False
    if value.get("downloads") is not None:
        try:
            downloads = _boolean(value["downloads"])
        except _Invalid as exc:
            problems.append((".downloads", str(exc)))
    rate: float | None = None
    if value.get("rate_per_second") is not None:
        try:
            rate = float(_number(value["rate_per_second"]))
            if rate <= 0:
                raise _Invalid("must be greater than 0")
        except _Invalid as exc:
            problems.append((".rate_per_second", str(exc)))
    if problems:
        raise _Invalid(items=problems)
    assert isinstance(name, str)
    assert isinstance(digest, str)
    return CallerSettings(name, digest, tuple(rules), downloads, rate)


def _callers(value: object) -> tuple[CallerSettings, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of callers, got {_kind(value)}")
    callers: list[CallerSettings] = []
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate(value):
        try:
            callers.append(_caller(entry))
        except _Invalid as exc:
            problems += [(f"[{index}]{suffix}", message) for suffix, message in exc.problems]
    seen: dict[str, int] = {}
    for index, caller in enumerate(callers):
        if caller.name in seen:
            problems.append(
                (f"[{index}].name", f"{caller.name!r} is already caller {seen[caller.name]}")
            )
        seen.setdefault(caller.name, index)
    digests = [caller.key_sha256 for caller in callers]
    if len(set(digests)) != len(digests):
        problems.append(("", "two callers share one key_sha256: each needs a key of its own"))
    if problems:
        raise _Invalid(items=problems)
    return tuple(callers)


_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_REDIS_DB = re.compile(r"/?[0-9]*")


def _redis_url(value: object) -> RedisURL:
    """``redis://``, ``rediss://`` (TLS) or ``unix://``; messages never quote the URL,
    which may carry a password."""
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}")
    usage = "expected redis://[:password@]host[:port][/db], rediss://... (TLS) or unix:///path"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _Invalid(usage) from None
    scheme = parts.scheme.lower()
    if scheme not in _REDIS_SCHEMES:
        raise _Invalid(usage)
    if scheme == "unix" and not parts.path:
        raise _Invalid("a unix:// URL needs the socket's path, as in unix:///run/redis.sock")
    if scheme != "unix" and not parts.hostname:
        raise _Invalid(f"{usage}: the host is missing")
    if scheme != "unix" and not _REDIS_DB.fullmatch(parts.path):
        raise _Invalid(f"{usage}: the path must be a database number")
    return RedisURL(value)


_non_negative = _checked(_number, "0 or more", lambda n: n >= 0)
_positive = _checked(_number, "greater than 0", lambda n: n > 0)

# One converter per leaf key; the dataclasses above give the structure and defaults.
_CONVERTERS: dict[str, _Convert] = {
    "listen.host": _text,
    "listen.port": _checked(_integer, "between 1 and 65535", lambda n: 1 <= n <= 65535),
    "listen.shutdown_timeout": _non_negative,
    "listen.head_timeout": _positive,
    "public_url": _public_url,
    "trust_forwarded_headers": _boolean,
    "zoom.client_id": _text,
    "zoom.client_secret": _secret,
    "zoom.redirect_uri": _http_url,
    "zoom.authorize_url": _http_url,
    "zoom.token_url": _http_url,
    "zoom.revoke_url": _http_url,
    "zoom.api_base_url": _api_base_url,
    "zoom.scopes": _scopes,
    "zoom.download_origins": _list_of(_download_origin),
    "service.account_id": _text,
    "service.client_id": _text,
    "service.client_secret": _secret,
    "service.callers": _callers,
    "session.secret_keys": _secret_keys,
    "session.cookie_name": _cookie_name,
    "session.cookie_secure": _boolean,
    "session.cookie_samesite": _choice("Lax", "Strict", "None"),
    "session.max_age": _checked(_integer, "greater than 0", lambda n: n > 0),
    "session.store": _choice("cookie", "redis"),
    "refresh.margin": _non_negative,
    "refresh.rotation_grace": _non_negative,
    "upstream.connect_timeout": _positive,
    "upstream.timeout": _positive,
    "upstream.max_replay_body": _checked(_integer, "0 or more", lambda n: n >= 0),
    "cors.allowed_origins": _list_of(_origin),
    "access.allowed_account_ids": _list_of(_not_empty),
    "access.allowed_emails": _list_of(_email),
    "access.allowed_email_domains": _list_of(_email_domain),
    "redis.url": _redis_url,
    "redis.key_prefix": _text,
    "redis.on_unavailable": _choice("fail", "local"),
    "webhooks.secret_token": _secret,
    "webhooks.max_skew": _checked(_integer, "between 1 and 3600", lambda n: 1 <= n <= 3600),
    "webhooks.forward_to": _http_url,
    "webhooks.forward_timeout": _checked(
        _number, "greater than 0 and under 3 (Zoom waits 3 s)", lambda n: 0 < n < 3
    ),
    "logging.level": _choice("debug", "info", "warning", "error", "critical"),
    "logging.format": _choice("text", "json"),
    "metrics.enabled": _boolean,
}


# --- substitution and the walk over the schema ----------------------------------------

# A reference, ${NAME} or ${NAME:-default}; failing that, any other "${" and the
# name-like characters after it, which is a malformed reference.
_REFERENCE = re.compile(
    r"\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bad>[A-Za-z0-9_]*))"
)


# Secrets that may contain "${" (a Redis password, say): a malformed reference in
# them is not quoted. Session keys are base64, so a "${" in one is never part of a key.
_MAY_CONTAIN_REFERENCE_CHARACTERS = frozenset(
    {"zoom.client_secret", "service.client_secret", "redis.url", "webhooks.secret_token"}
)


def _substitute(value: object, environ: Mapping[str, str], *, quote: bool = True) -> object:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in a string or a list's strings.

    A malformed reference is quoted as ``"${NAME"`` in its problem unless ``quote`` is
    false, for values where a secret may contain ``${``."""
    if isinstance(value, list):
        result, problems = [], []
        for index, element in enumerate(value):
            try:
                result.append(_substitute(element, environ, quote=quote))
            except _Invalid as exc:
                problems += [(f"[{index}]{suffix}", message) for suffix, message in exc.problems]
        if problems:
            raise _Invalid(items=problems)
        return result
    if not isinstance(value, str):
        return value
    wrong: dict[str, None] = {}  # in order, each once

    def replace(match: re.Match[str]) -> str:
        name, default, bad = match.group("name", "default", "bad")
        if bad is not None:
            # "${" and the name after it at most, never what follows.
            start = f'"${{{bad}"' if quote else 'a "${"'
            if "}" in value[match.end() :]:
                wrong[f"{start} is malformed: write ${{NAME}} or ${{NAME:-default}}"] = None
            else:
                wrong[f'{start} has no closing "}}"'] = None
            return ""
        current = environ.get(name)
        if current:
            return current
        if default is not None:
            return default
        if current is None:
            wrong[f"environment variable {name} is not set"] = None
        return ""

    text = _REFERENCE.sub(replace, value)
    if wrong:
        raise _Invalid(items=[("", problem) for problem in wrong])
    return text


def _cross_check(
    cls: type[Any], values: Mapping[str, object], failed: AbstractSet[str]
) -> Iterable[tuple[str, str]]:
    """Problems that involve two keys, of one section or, for ``Settings``, of two.
    ``failed``: the keys given but invalid, whose problems are reported already."""

    def absent(key: str) -> bool:
        return key not in values and key not in failed

    if (
        cls is SessionSettings
        and values.get("cookie_samesite") == "None"
        and values.get("cookie_secure") is False
    ):
        yield "cookie_samesite", "None requires cookie_secure: true (browsers reject it otherwise)"
    if cls is ZoomSettings and absent("client_id") != absent("client_secret"):
        # The user app needs both (or, with service callers only, neither).
        yield ("client_secret" if absent("client_secret") else "client_id"), "required"
    if cls is WebhookSettings and not absent("forward_to") and absent("secret_token"):
        yield "secret_token", "required when webhooks.forward_to is set"
    if cls is ServiceSettings and not absent("account_id"):
        for key in ("client_id", "client_secret"):
            if absent(key):
                yield key, "required when service.account_id is set"
        if absent("callers") or values.get("callers") == ():
            yield "callers", "list at least one caller when service.account_id is set"
    if cls is ServiceSettings and absent("account_id") and values.get("callers"):
        yield "account_id", "required when service.callers are listed"
    zoom, service = values.get("zoom"), values.get("service")
    if (
        cls is Settings
        and isinstance(zoom, ZoomSettings)
        and isinstance(service, ServiceSettings)
        and zoom.client_id is None
        and zoom.client_secret is None
        and not service.enabled
    ):
        # Neither the user app nor the service app: the user app is the usual one.
        yield "zoom.client_id", "required"
        yield "zoom.client_secret", "required"
    session, redis = values.get("session"), values.get("redis")
    public_url = values.get("public_url")
    if (
        cls is Settings
        and isinstance(session, SessionSettings)
        and not session.cookie_secure
        and isinstance(public_url, str)
        and public_url.startswith("https://")
    ):
        yield (
            "session.cookie_secure",
            "must be true when public_url is https:// (with false, browsers also send the "
            "session cookie over plain http, where anyone on the network can read it): "
            "set it to true or remove it",
        )
    if cls is Settings and isinstance(session, SessionSettings) and session.store == "redis":
        if isinstance(redis, RedisSettings) and redis.url is None:
            yield "redis.url", "required when session.store is redis"
        if isinstance(redis, RedisSettings) and redis.on_unavailable == "local":
            yield (
                "redis.on_unavailable",
                "local needs session.store: cookie (with store: redis the sessions are in Redis)",
            )


def _paths(cls: type[Any], prefix: str = "") -> Iterator[str]:
    """Every known key's dotted path, sections included."""
    for f in fields(cls):
        key = prefix + f.name
        yield key
        if key not in _CONVERTERS:
            yield from _paths(cast(type[Any], f.type), key + ".")


_KNOWN_PATHS = tuple(_paths(Settings))
_TOP_LEVEL = tuple(path for path in _KNOWN_PATHS if "." not in path)
# A nested key outdented to the top level is found by its last part (``port``).
_BY_LAST_PART = {path.rpartition(".")[2]: path for path in reversed(_KNOWN_PATHS) if "." in path}
# Difflib's default, 0.6, pairs unrelated words such as colour and cors.
_CLOSE_ENOUGH = 0.7


def _unknown_key(prefix: str, key: object, names: list[str]) -> str:
    """The problem for ``key`` in the section at ``prefix``, with the closest known key
    at that level or, for a key that looks mis-indented, one level off."""
    name = str(key)
    suggestion = [prefix + match for match in get_close_matches(name, names, 1, _CLOSE_ENOUGH)]
    if not suggestion and not prefix:
        matches = get_close_matches(name, _BY_LAST_PART, 1, _CLOSE_ENOUGH)
        suggestion = [_BY_LAST_PART[match] for match in matches]
    if not suggestion and prefix:
        suggestion = get_close_matches(name, _TOP_LEVEL, 1, _CLOSE_ENOUGH)
    hint = f"; did you mean {suggestion[0]}?" if suggestion else ""
    return f"{prefix}{name}: unknown key{hint}"


def _build(
    cls: type[Any],
    data: Mapping[Any, object],
    prefix: str,
    environ: Mapping[str, str],
    problems: list[str],
) -> Any:
    """Instantiate ``cls`` from ``data``, appending every problem; None if it had any.

    Problems elsewhere do not stop it, so checks between sections still run."""
    before = len(problems)
    failed: set[str] = set()
    names = [f.name for f in fields(cls)]
    problems += [_unknown_key(prefix, key, names) for key in data if key not in names]
    values: dict[str, object] = {}
    for f in fields(cls):
        key = prefix + f.name
        raw = data.get(f.name)
        if key not in _CONVERTERS:  # a nested section
            if raw is None:
                raw = {}
            if isinstance(raw, Mapping):
                values[f.name] = _build(cast(type[Any], f.type), raw, key + ".", environ, problems)
            else:
                problems.append(f"{key}: expected a mapping, got {_kind(raw)}")
            continue
        try:
            value = _substitute(raw, environ, quote=key not in _MAY_CONTAIN_REFERENCE_CHARACTERS)
            if value is None or value == "":
                if f.default is MISSING and f.default_factory is MISSING:
                    raise _Invalid("required")
                continue
            values[f.name] = _CONVERTERS[key](value)
        except _Invalid as exc:
            failed.add(f.name)
            problems += [f"{key}{suffix}: {message}" for suffix, message in exc.problems]
    problems += [
        f"{prefix}{name}: {message}" for name, message in _cross_check(cls, values, failed)
    ]
    return None if len(problems) > before else cls(**values)


def settings_from_mapping(
    data: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate parsed configuration ``data``; ``environ`` (default ``os.environ``) feeds
    ``${NAME}``. Raises :class:`ConfigError` listing every problem."""
    return _validate(data, environ, [])


def _validate(
    data: Mapping[str, object], environ: Mapping[str, str] | None, problems: list[str]
) -> Settings:
    """:func:`settings_from_mapping`, reporting ``problems`` found before it as well."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the configuration must be a mapping, got {_kind(data)}")
    settings = _build(Settings, data, "", os.environ if environ is None else environ, problems)
    if problems:
        raise ConfigError(*problems)
    assert isinstance(settings, Settings)
    return settings


# --- YAML ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """A safe loader that records keys given more than once in a mapping, which PyYAML
    would silently resolve to the last. ``duplicates`` holds (first line, problem)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []
        # Each node's dotted path, set by its parent before the node is constructed.
        self._paths: dict[yaml.Node, str] = {}

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
        path = self._paths.get(node, "")
        for index, item in enumerate(node.value):
            self._paths[item] = f"{path}[{index}]"
        return super().construct_sequence(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        path = self._paths.get(node, "")
        lines: dict[object, list[int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue  # "<<" merges, where a later key may override; unhashable keys fail
            key = self.construct_object(key_node)
            self._paths[value_node] = f"{path}.{key}" if path else str(key)
            lines.setdefault(key, []).append(key_node.start_mark.line + 1)
        for key, found in lines.items():
            if len(found) > 1:
                distinct = sorted(set(found))
                where = f"line {distinct[0]}"
                if len(distinct) > 1:
                    where = f"lines {', '.join(map(str, distinct[:-1]))} and {distinct[-1]}"
                times = "twice" if len(found) == 2 else f"{len(found)} times"
                dotted = f"{path}.{key}" if path else str(key)
                # Never the values: one of them may be a secret.
                self.duplicates.append((found[0], f"{dotted}: given {times} ({where})"))
        return super().construct_mapping(node, deep=deep)


def _parse(text: str) -> tuple[object, list[str]]:
    """The YAML document in ``text`` and its duplicate keys, in the order of the file."""
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, [problem for _, problem in sorted(loader.duplicates)]


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate a YAML config file.

    ``path`` defaults to ``$ZOOM_PROXY_CONFIG``, else ``config.yaml``. A missing or
    unreadable file, invalid YAML or a top level that is not a mapping is a
    :class:`ConfigError` with one line, like any invalid value.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get(CONFIG_PATH_VARIABLE) or DEFAULT_CONFIG_PATH
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: config file is not UTF-8 text") from None
    try:
        data, duplicates = _parse(text)
    except yaml.YAMLError as exc:
        where = ""
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            where = f"{exc.problem_mark.line + 1}:{exc.problem_mark.column + 1}:"
        reason = getattr(exc, "problem", None) or "cannot parse"
        raise ConfigError(f"{name}:{where} invalid YAML: {reason}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: the top level must be a mapping of settings, got {_kind(data)}")
    return _validate(data, environ, duplicates)


def effective_config(settings: Settings) -> dict[str, object]:
    """The settings as a config mapping, defaults filled in and every secret masked."""

    def plain(value: object) -> object:
        if isinstance(value, Secret):
            return _MASK
        if isinstance(value, RedisURL):
            return value.masked
        if isinstance(value, AllowRule):
            return value.text
        if isinstance(value, Origin):
            return str(value)
        if is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value

    result = plain(settings)
    assert isinstance(result, dict)
    result["zoom"]["redirect_uri"] = settings.redirect_uri
    first = ("listen", "public_url", "trust_forwarded_headers")
    return {key: result[key] for key in (*first, *(k for k in result if k not in first))}
