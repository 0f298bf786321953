import re
from pathlib import Path
from urllib.parse import SplitResult, urljoin, urlsplit

import pytest

from proxy.security import (
    MAX_NEXT_LENGTH,
    cors_origin,
    is_cross_origin_request,
    is_safe_api_path,
    normalize_origin,
    safe_next,
)

OPEN_REDIRECTS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "openredirects.txt"
BASE = "http://proxy.test/"
OWN = "http://127.0.0.1:8080"
ALLOWED = frozenset({"https://app.example.com", "http://localhost:3000"})


def load_payloads() -> list[str]:
    # splitlines() drops only the final newline; inner whitespace is part of a payload.
    return OPEN_REDIRECTS.read_text(encoding="utf-8").splitlines()


PAYLOADS = load_payloads()

OWN_PAYLOADS = [
    "",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "/ /evil.example",
    "/\t/evil.example",
    "/\r/evil.example",
    "/\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "//evil.example",
    "///evil.example",
    "////evil.example",
    "/%2f%2fevil.example",
    "/%2F/evil.example",
    "%2f%2fevil.example",
    "/%5cevil.example",
    "/%5Cevil.example",
    "/%252f%252fevil.example",
    "/%25252f%25252fevil.example",
    "/%09/evil.example",
    "/./\\evil.example",
    "/.\\evil.example",
    "/../evil.example",
    "/a/../../evil.example",
    "/%2e%2e/evil.example",
    "/%2E./evil.example",
    "/a/.;x/b",
    "//user@evil.example",
    "//user:pass@evil.example/",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://evil.example",
    "https:evil.example",
    "https:/evil.example",
    "evil.example",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "/\uff0fevil.example",
    "/%EF%BC%8F%EF%BC%8Fevil.example",
    "/\u3000/evil.example",
    "/\u2028evil.example",
    "/\x00evil",
    "/\x7fevil",
    "/\x85evil",
    "/%0d%0aSet-Cookie:x",
    "/%0D%0ASet-Cookie:x",
    "/%250d%250aSet-Cookie:x",
    "/%e2%80%a8x",
    "/x?next=//evil.example",
    "/https://evil.example",
    "/" + "a" * MAX_NEXT_LENGTH,
]

LEGIT_NEXT = [
    "/",
    "/meetings",
    "/api/users/me?x=1&y=%20",
    "/a/b#frag",
    "/path:with:colons",
    "/api/x?t=a:b",
    "/%E2%9C%93",
    "/a@b",
    "/api/meetings/%252FajXp%253D%253D/recordings",
    "/api/meetings/ab%252F%252Fcd",
    "/100%",
    "/a/...",
    "/" + "a" * (MAX_NEXT_LENGTH - 1),
]


def browser_resolve(target: str) -> SplitResult:
    """Resolve ``target`` against BASE the lenient way a browser's URL parser does."""
    target = target.strip("".join(map(chr, range(0x21))))
    target = re.sub(r"[\t\r\n]", "", target).replace("\\", "/")
    return urlsplit(urljoin(BASE, target))


def assert_stays_on_proxy(target: str) -> None:
    assert "\r" not in target
    assert "\n" not in target
    for resolved in (urlsplit(urljoin(BASE, target)), browser_resolve(target)):
        assert resolved.scheme == "http"
        assert resolved.netloc == "proxy.test"


def test_openredirects_file_has_all_payloads() -> None:
    assert len(PAYLOADS) == 559
    # The upstream file starts with an empty line: the empty `next` is a payload too.
    assert [i for i, payload in enumerate(PAYLOADS) if not payload] == [0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_safe_next_refuses_known_open_redirect(payload: str) -> None:
    assert safe_next(payload) == "/"
    assert_stays_on_proxy(safe_next(payload))


@pytest.mark.parametrize("payload", OWN_PAYLOADS)
def test_safe_next_refuses_redirect_trick(payload: str) -> None:
    assert safe_next(payload) == "/"


@pytest.mark.parametrize("target", LEGIT_NEXT)
def test_safe_next_keeps_local_path(target: str) -> None:
    assert safe_next(target) == target
    assert_stays_on_proxy(target)


def test_safe_next_without_value_is_root() -> None:
    assert safe_next(None) == "/"


def test_safe_next_refuses_overlong_input() -> None:
    assert safe_next("/" + "a" * MAX_NEXT_LENGTH) == "/"
    assert safe_next("/a?" + "b" * 100_000) == "/"


def test_safe_next_refuses_encoding_nested_too_deep() -> None:
    assert safe_next("/%252525252541") == "/"


@pytest.mark.parametrize(
    "path",
    [
        "users/me",
        "users/me/",
        "meetings/%252FajXp%253D%253D/recordings",
        "meetings/%252F%252FajXp%253D%253D",
        "a/.../b",
        "a/.b",
        "a/..b",
        "a;b/c",
        "users/%7Ename",
        "users/%ff",
        "users/a%2Eb",
    ],
)
def test_api_path_accepted(path: str) -> None:
    assert is_safe_api_path(path)


def test_api_path_double_encoded_uuid_accepted_exactly() -> None:
    # Only a yes/no: the caller forwards the raw path it checked, untouched.
    path = "past_meetings/%252FajXpiKfTlKXAdl9O5CGgw%253D%253D/participants"
    assert is_safe_api_path(path) is True


@pytest.mark.parametrize(
    "path",
    [
        "",
        "..",
        ".",
        "users/..",
        "users/../admin",
        "users/./me",
        "%2e%2e",
        "%2E%2E/x",
        "users/%2e./admin",
        "users/.%2E/admin",
        "users/%2e",
        "..%2f",
        "users/..%2fadmin",
        "users/..;/admin",
        "users/..;a=b/admin",
        "users/.;/me",
        "users/.;x",
        "/users/me",
        "users//me",
        "users/me//",
        "//",
        "/",
        "users\\me",
        "users%5cme",
        "users%5Cme",
        "users%2Fme",
        "users%2fme",
        "users/me%00",
        "users/me%0a",
        "users/me%0D%0AX-Injected:1",
        "users/me%7f",
        "users/\x00me",
        "users/me%zz",
        "users/me%4",
        "users/me%",
        "users/%%32%65",
    ],
)
def test_api_path_refused(path: str) -> None:
    assert not is_safe_api_path(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://example.com", "http://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:443", "http://example.com:443"),
        ("https://example.com:80", "https://example.com:80"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://localhost:08080", "http://localhost:8080"),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "example.com",
        "http://",
        "http://example.com/",
        "http://example.com/path",
        "http://example.com?x",
        "http://example.com#x",
        "http://user@example.com",
        "http://user:pw@example.com",
        "ftp://example.com",
        "file://",
        "javascript:alert(1)",
        "http://example.com:99999",
        "http://example.com:",
        "http://exa mple.com",
        " http://example.com",
        "http://example.com\r\n",
    ],
)
def test_normalize_origin_refuses_non_origin(value: str) -> None:
    assert normalize_origin(value) is None


@pytest.mark.parametrize(
    ("sec_fetch_site", "origin", "cross"),
    [
        (None, None, False),
        ("none", None, False),
        ("same-origin", None, False),
        ("Same-Origin", None, False),
        ("cross-site", None, True),
        ("same-site", None, True),
        (None, "http://127.0.0.1:8080", False),
        (None, "HTTP://127.0.0.1:8080", False),
        ("same-origin", "http://127.0.0.1:8080", False),
        ("same-site", "http://127.0.0.1:5173", True),
        (None, "http://127.0.0.1:5173", True),
        (None, "http://localhost:8080", True),
        (None, "https://127.0.0.1:8080", True),
        ("cross-site", "https://evil.example", True),
        (None, "null", True),
        ("cross-site", "null", True),
        (None, "", True),
        ("cross-site", "https://app.example.com", False),
        ("cross-site", "https://app.example.com:443", False),
        ("same-site", "http://localhost:3000", False),
        ("cross-site", "http://app.example.com", True),
    ],
)
def test_cross_origin_request(sec_fetch_site: str | None, origin: str | None, cross: bool) -> None:
    result = is_cross_origin_request(
        sec_fetch_site=sec_fetch_site, origin=origin, own_origin=OWN, allowed_origins=ALLOWED
    )
    assert result is cross


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("https://APP.example.com:443", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://app.example.com", None),
        ("http://localhost:3001", None),
        ("https://evil.example", None),
        ("null", None),
        ("*", None),
        ("", None),
        (None, None),
    ],
)
def test_cors_origin(origin: str | None, expected: str | None) -> None:
    assert cors_origin(origin, ALLOWED) == expected


def test_cors_origin_never_wildcard() -> None:
    assert cors_origin("*", {"*"}) is None
