"""Header filtering and the upstream request target, on their own."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.errors import UnsafePath
from proxy.forward import headers as headers_module
from proxy.forward.core import about_the_token, upstream_target
from proxy.forward.headers import (
    NAMES_CACHED,
    request_headers_for_zoom,
    response_headers_for_client,
)


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def for_zoom(*pairs: tuple[str, str], trust_forwarded: bool = False) -> CIMultiDict[str]:
    return CIMultiDict(
        request_headers_for_zoom(
            headers(*pairs), access_token="TOKEN", trust_forwarded=trust_forwarded
        )
    )


def from_zoom(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return response_headers_for_client([(name.encode(), value.encode()) for name, value in pairs])


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Cookie",
        "Host",
        "Content-Length",
        "Expect",
    ],
)
def test_hop_by_hop_and_client_identity_headers_are_dropped(name: str) -> None:
    assert name not in for_zoom((name, "x"), ("Accept", "application/json"))


def test_the_client_authorization_is_replaced_by_the_session_bearer() -> None:
    result = for_zoom(("Authorization", "Bearer stolen"), ("authorization", "Basic x"))
    assert result.getall("Authorization") == ["Bearer TOKEN"]


def test_headers_named_in_connection_are_dropped() -> None:
    result = for_zoom(("Connection", "close, X-Secret"), ("X-Secret", "1"), ("X-Kept", "2"))
    assert "X-Secret" not in result
    assert result["X-Kept"] == "2"


def test_connection_cannot_strip_the_bearer() -> None:
    assert for_zoom(("Connection", "Authorization"))["Authorization"] == "Bearer TOKEN"


def test_underscore_header_names_cannot_smuggle() -> None:
    result = for_zoom(("X_Forwarded_For", "1.2.3.4"), ("Authorization_", "x"), ("X-Ok", "1"))
    assert list(result.keys()) == ["X-Ok", "Authorization"]


def test_forwarded_headers_are_dropped_unless_trusted() -> None:
    pairs = (("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=1.2.3.4"), ("X-Real-IP", "1"))
    assert set(for_zoom(*pairs).keys()) == {"Authorization"}
    assert set(for_zoom(*pairs, trust_forwarded=True).keys()) == {
        "X-Forwarded-For",
        "Forwarded",
        "X-Real-IP",
        "Authorization",
    }


def test_end_to_end_headers_pass_in_order_with_repeats() -> None:
    result = for_zoom(("Accept", "a"), ("X-Multi", "1"), ("X-Multi", "2"), ("Content-Type", "t"))
    assert list(result.items())[:4] == [
        ("Accept", "a"),
        ("X-Multi", "1"),
        ("X-Multi", "2"),
        ("Content-Type", "t"),
    ]


def test_zoom_set_cookie_and_hop_by_hop_are_dropped_on_the_way_out() -> None:
    result = from_zoom(
        ("Set-Cookie", "zm=1"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),
        ("Content-Encoding", "gzip"),
        ("Retry-After", "Sat, 28 Nov 2026 10:00:00 GMT"),
    )
    assert list(result.items()) == [
        ("Content-Encoding", "gzip"),
        ("Retry-After", "Sat, 28 Nov 2026 10:00:00 GMT"),
    ]


def test_the_upstream_target_keeps_path_and_query_byte_for_byte() -> None:
    raw = "/api/meetings/%252FajXp%252F%252Fab%253D%253D/recordings?a=%2F%20b&c"
    target = upstream_target("/v2", raw)
    assert target == "/v2/meetings/%252FajXp%252F%252Fab%253D%253D/recordings?a=%2F%20b&c"


def test_a_uuid_with_one_slash_encoded_once_makes_its_upstream_target_unchanged() -> None:
    raw = "/api/past_meetings/Gx3Zp9%2FkQ0a1b2c3d4e5f6%3D%3D/participants?page_size=30"
    target = upstream_target("/v2", raw)
    assert target == "/v2/past_meetings/Gx3Zp9%2FkQ0a1b2c3d4e5f6%3D%3D/participants?page_size=30"


@pytest.mark.parametrize(
    "raw",
    [
        "/api/../oauth/token",
        "/api/users/%2e%2e/x",
        "/api//users",
        "/api/a%2F%2Fb",
        "/api/a%2F..%2Fb",
        "/api/",
        "/api%2Fusers",
        "/apix/users",
        "/api/users\\me",
    ],
)
def test_unsafe_paths_never_make_an_upstream_target(raw: str) -> None:
    with pytest.raises(UnsafePath):
        upstream_target("/v2", raw)


def test_zoom_cannot_grant_cors_to_anyone() -> None:
    result = from_zoom(
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Content-Type", "application/json"),
    )
    assert list(result.keys()) == ["Content-Type"]


def test_a_fragment_never_truncates_the_upstream_query() -> None:
    with pytest.raises(UnsafePath):
        upstream_target("/v2", "/api/users?a=1#x&b=2")


def test_a_flood_of_invented_names_is_still_filtered_and_never_grows_the_caches() -> None:
    flood = [(f"X-Flood-{i}", "1") for i in range(2 * NAMES_CACHED)]
    flood += [(f"X_Flood_{i}", "1") for i in range(2 * NAMES_CACHED)]
    result = for_zoom(*flood, ("Cookie", "zoom_proxy=secret"))
    assert list(result.keys()) == [f"X-Flood-{i}" for i in range(2 * NAMES_CACHED)] + [
        "Authorization"
    ]
    answer = from_zoom(
        *[(f"Set-Cookie-{i}", "1") for i in range(2 * NAMES_CACHED)], ("Set-Cookie", "zm=1")
    )
    assert "Set-Cookie" not in answer
    assert len(answer) == 2 * NAMES_CACHED
    assert len(headers_module._REQUEST_VERDICTS) <= NAMES_CACHED
    assert len(headers_module._RESPONSE_NAMES) <= NAMES_CACHED


def test_a_header_named_by_connection_is_dropped_whatever_its_case() -> None:
    result = from_zoom(("Connection", "keep-alive, X-Hop"), ("x-hop", "1"), ("X-Kept", "2"))
    assert list(result.items()) == [("X-Kept", "2")]


@pytest.mark.parametrize(
    ("body", "about_token"),
    [
        (b'{"code":124,"message":"Access token is expired."}', True),
        (b'{"code":"124","message":"Invalid access token."}', True),
        (b'{"code":1010,"message":"User does not belong to this account"}', False),
        (b'{"code":4711,"message":"Invalid access token, does not contain scopes."}', False),
        (b'{"message":"Unauthorized"}', True),
        (b"Unauthorized", True),
        (b"", True),
        (None, True),
        (b"\xff\xfe{", True),
        (b"[124]", True),
        (b"[" * 100_000, True),
        (b'{"code": 1e999999}', False),
    ],
)
def test_a_401_is_about_the_token_only_with_code_124_or_no_zoom_error(
    body: bytes | None, about_token: bool
) -> None:
    assert about_the_token(body) is about_token
