"""Session values and their chunked, encrypted cookies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp_session import Session
from cryptography.fernet import Fernet

from proxy.session.cookie import (
    COOKIE_BYTES_LIMIT,
    ChunkedCookieStorage,
)
from proxy.session.model import SessionData
from proxy.session.revocations import Revocations
from proxy.session.store import CookieSessions, SignedIn
from proxy.tokens.model import Tokens, User
from proxy.tokens.sealing import make_fernet

KEY = Fernet.generate_key().decode()


def storage(*keys: str, clock: Callable[[], float] = time.time) -> ChunkedCookieStorage:
    return ChunkedCookieStorage(
        make_fernet(keys or (KEY,)),
        cookie_name="zoom_proxy",
        max_age=3600,
        secure=True,
        samesite="Lax",
        clock=clock,
    )


def session_data(token_length: int) -> SessionData:
    return SessionData(
        tokens=Tokens(
            access_token="a" * token_length,
            refresh_token="r" * token_length,
            expires_at=1234567890.0,
            scope="meeting:read",
        ),
        user=User(
            id="u1", email="u@example.com", first_name="U", last_name="One", account_id="acc"
        ),
    )


def request_with(cookies: dict[str, str]) -> web.Request:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return make_mocked_request("GET", "/", headers={"Cookie": header} if header else {})


async def saved(
    store: ChunkedCookieStorage, data: SessionData | None, request: web.Request
) -> web.Response:
    session = Session(None, data=None, new=True, max_age=3600)
    if data is not None:
        session.update(data.to_json())
    response = web.Response()
    await store.save_session(request, response, session)
    return response


def set_cookie_headers(response: web.Response) -> list[str]:
    return [morsel.OutputString() for morsel in response.cookies.values()]


async def test_a_2000_character_token_pair_is_split_and_every_header_fits() -> None:
    store = storage()
    response = await saved(store, session_data(2000), request_with({}))
    headers = set_cookie_headers(response)
    assert len(headers) >= 2
    assert all(len(h.encode()) <= COOKIE_BYTES_LIMIT for h in headers)
    cookies = {m.key: m.value for m in response.cookies.values()}
    loaded = await store.load_session(request_with(cookies))
    assert SessionData.from_json(loaded) == session_data(2000)


async def test_a_small_session_is_one_cookie_with_the_required_attributes() -> None:
    response = await saved(storage(), session_data(600), request_with({}))
    (header,) = set_cookie_headers(response)
    assert header.startswith("zoom_proxy=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=3600"):
        assert attribute in header


async def test_chunks_a_shrunken_session_no_longer_uses_are_expired() -> None:
    store = storage()
    big = await saved(store, session_data(2000), request_with({}))
    big_cookies = {m.key: m.value for m in big.cookies.values()}
    small = await saved(store, session_data(600), request_with(big_cookies))
    expired = {m.key for m in small.cookies.values() if m["max-age"] == "0"}
    assert expired == set(big_cookies) - {"zoom_proxy"}


async def test_an_emptied_session_expires_every_chunk() -> None:
    store = storage()
    big = await saved(store, session_data(2000), request_with({}))
    big_cookies = {m.key: m.value for m in big.cookies.values()}
    cleared = await saved(store, None, request_with(big_cookies))
    assert {m.key for m in cleared.cookies.values() if m["max-age"] == "0"} == set(big_cookies)


async def test_tampered_cookie_loads_as_signed_out() -> None:
    store = storage()
    response = await saved(store, session_data(600), request_with({}))
    value = response.cookies["zoom_proxy"].value
    tampered = value[:50] + ("A" if value[50] != "A" else "B") + value[51:]
    assert (await store.load_session(request_with({"zoom_proxy": tampered}))).empty


async def test_cookie_from_an_unknown_key_loads_as_signed_out() -> None:
    response = await saved(
        storage(Fernet.generate_key().decode()), session_data(600), request_with({})
    )
    cookies = {"zoom_proxy": response.cookies["zoom_proxy"].value}
    assert (await storage().load_session(request_with(cookies))).empty


async def test_a_retired_key_still_decrypts_while_listed_second() -> None:
    old_key = Fernet.generate_key().decode()
    response = await saved(storage(old_key), session_data(600), request_with({}))
    cookies = {"zoom_proxy": response.cookies["zoom_proxy"].value}
    loaded = await storage(KEY, old_key).load_session(request_with(cookies))
    assert SessionData.from_json(loaded) == session_data(600)


async def test_the_first_key_encrypts() -> None:
    new_key = Fernet.generate_key().decode()
    response = await saved(storage(new_key, KEY), session_data(600), request_with({}))
    token = response.cookies["zoom_proxy"].value.encode()
    token += b"=" * (-len(token) % 4)  # the cookie drops base64's padding
    assert json.loads(Fernet(new_key).decrypt(token))["session"]["user"]["id"] == "u1"


def test_malformed_session_json_is_signed_out() -> None:
    assert SessionData.from_json({"tokens": {"access_token": ""}, "user": {}}) is None
    assert SessionData.from_json({"tokens": "x", "user": []}) is None


def test_tokens_repr_hides_the_tokens() -> None:
    assert "aaaa" not in repr(session_data(600).tokens)


async def test_cookie_values_need_no_quoting() -> None:
    response = await saved(storage(), session_data(2000), request_with({}))
    assert all('"' not in header for header in set_cookie_headers(response))


async def test_quoted_cookie_values_from_clients_still_load() -> None:
    store = storage()
    response = await saved(store, session_data(600), request_with({}))
    quoted = f'"{response.cookies["zoom_proxy"].value}"'
    loaded = await store.load_session(request_with({"zoom_proxy": quoted}))
    assert SessionData.from_json(loaded) == session_data(600)


async def test_a_cached_session_still_expires() -> None:
    now = [1_800_000_000.0]
    store = storage(clock=lambda: now[0])
    session = Session(None, data=None, new=True, max_age=3600)
    session.update(session_data(600).to_json())
    response = web.Response()
    await store.save_session(request_with({}), response, session)
    cookies = {"zoom_proxy": response.cookies["zoom_proxy"].value}
    assert not (await store.load_session(request_with(cookies))).empty
    now[0] += 3601
    assert (await store.load_session(request_with(cookies))).empty


async def test_a_cached_session_expires_on_the_read_only_path_too() -> None:
    now = [time.time()]  # aiohttp-session stamps sign-in with the real clock
    store = storage(clock=lambda: now[0])
    sessions = CookieSessions(store, Revocations(keep_for=60))
    response = await saved(store, session_data(600), request_with({}))
    cookies = {"zoom_proxy": response.cookies["zoom_proxy"].value}
    assert await sessions.load(cookie_header(cookies)) == SignedIn(session_data(600))
    now[0] += 3601
    assert await sessions.load(cookie_header(cookies)) is None


async def test_the_read_only_path_signs_out_a_tampered_cookie() -> None:
    store = storage()
    response = await saved(store, session_data(600), request_with({}))
    value = response.cookies["zoom_proxy"].value
    tampered = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    assert (
        await CookieSessions(store, Revocations(keep_for=60)).load(
            cookie_header({"zoom_proxy": tampered})
        )
        is None
    )


async def test_a_session_ends_max_age_after_sign_in_however_often_it_was_refreshed() -> None:
    now = 1_800_000_000
    store = storage(clock=lambda: float(now))
    signed_in_at = now - 3601  # refreshed just now, so the cookie itself is fresh
    stored = {"created": signed_in_at, "session": session_data(600).to_json()}
    value = make_fernet((KEY,)).encrypt_at_time(json.dumps(stored).encode(), now).decode()
    request = request_with({"zoom_proxy": value.rstrip("=")})
    assert (
        await CookieSessions(store, Revocations(keep_for=60)).load(cookie_header_of(request))
        is None
    )
    stored["created"] = now - 3599
    value = make_fernet((KEY,)).encrypt_at_time(json.dumps(stored).encode(), now).decode()
    request = request_with({"zoom_proxy": value.rstrip("=")})
    assert await CookieSessions(store, Revocations(keep_for=60)).load(
        cookie_header_of(request)
    ) == SignedIn(session_data(600))


async def test_a_header_read_before_still_ends_max_age_after_sign_in() -> None:
    # The same Cookie header, read again, is answered from memory: that memory must end
    # with the sign-in's lifetime, not the (later) refresh that sealed the cookie.
    now = [1_800_000_000.0]
    store = storage(clock=lambda: now[0])
    sessions = CookieSessions(store, Revocations(keep_for=60))
    stored = {"created": int(now[0]) - 3000, "session": session_data(600).to_json()}
    value = make_fernet((KEY,)).encrypt_at_time(json.dumps(stored).encode(), int(now[0]))
    header = cookie_header({"zoom_proxy": value.decode().rstrip("=")})
    assert sessions.read_now(header) == SignedIn(session_data(600))
    now[0] += 599
    assert sessions.read_now(header) == SignedIn(session_data(600))
    now[0] += 2
    assert sessions.read_now(header) is None


def cookie_header(cookies: dict[str, str]) -> str:
    """A ``Cookie`` header carrying ``cookies``."""
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def cookie_header_of(request: web.Request) -> str:
    return request.headers.get("Cookie", "")
