"""The Zoom emulator, driven over a real loopback socket like the proxy drives it."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer
from yarl import URL

from proxy.emulator import (
    DEFAULT_SCOPE,
    AccessLogger,
    EmulatedUser,
    ZoomEmulator,
    download_chunks,
    s256_challenge,
)

Client = TestClient[web.Request, None]

REDIRECT_URI = "http://localhost:8080/auth/callback"
BASIC = aiohttp.encode_basic_auth("emulator-client-id", "emulator-client-secret")
INVALID_TOKEN = {"reason": "Invalid Token!", "error": "invalid_grant"}
INVALID_CODE = {"reason": "Invalid authorization code", "error": "invalid_request"}


@dataclass
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    body: dict[str, Any]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> ZoomEmulator:
    return ZoomEmulator(clock=clock)


@pytest.fixture
async def client(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, emulator: ZoomEmulator
) -> Client:
    server = await aiohttp_server(emulator.app(), access_log_class=AccessLogger)
    return await aiohttp_client(server)


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def authorize_params(verifier: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "emulator-client-id",
        "redirect_uri": REDIRECT_URI,
        "state": "s-123",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}


async def authorize(client: Client, verifier: str, **overrides: str | None) -> URL:
    """The redirect the emulator sends the browser back with."""
    params = authorize_params(verifier, **overrides)
    async with client.get("/oauth/authorize", params=params, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return URL(resp.headers["Location"])


async def get_code(client: Client, verifier: str) -> str:
    return (await authorize(client, verifier)).query["code"]


async def token_call(
    client: Client, data: dict[str, str], *, auth: str | None = BASIC
) -> tuple[int, Any]:
    headers = {"Authorization": auth} if auth is not None else {}
    async with client.post("/oauth/token", data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def exchange(
    client: Client, code: str, verifier: str, redirect_uri: str = REDIRECT_URI
) -> tuple[int, Any]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    return await token_call(client, data)


async def refresh(client: Client, refresh_token: str) -> tuple[int, Any]:
    return await token_call(client, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def as_tokens(body: dict[str, Any]) -> Tokens:
    return Tokens(body["access_token"], body["refresh_token"], body)


async def sign_in(client: Client) -> Tokens:
    verifier = new_verifier()
    status, body = await exchange(client, await get_code(client, verifier), verifier)
    assert status == 200, body
    return as_tokens(body)


async def api_get(client: Client, path: str, access_token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with client.get(path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def bearer(tokens: Tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.access_token}"}


# --- authorize -------------------------------------------------------------------------


async def test_authorize_redirects_with_code_and_state(client: Client) -> None:
    location = await authorize(client, new_verifier())

    assert str(location.with_query(None)) == REDIRECT_URI
    assert set(location.query) == {"code", "state"}
    assert location.query["state"] == "s-123"


async def test_authorize_without_state_redirects_without_state(client: Client) -> None:
    location = await authorize(client, new_verifier(), state=None)

    assert set(location.query) == {"code"}


async def test_authorize_keeps_existing_query_of_redirect_uri(
    client: Client, emulator: ZoomEmulator
) -> None:
    redirect_uri = "https://app.example.com/cb?tenant=a%20b"

    location = await authorize(client, new_verifier(), redirect_uri=redirect_uri)

    assert location.query["tenant"] == "a b"
    assert "code" in location.query


@pytest.mark.parametrize(
    "override",
    [
        {"response_type": "token"},
        {"client_id": "someone-else"},
        {"redirect_uri": "javascript:alert(1)"},
        {"redirect_uri": None},
        {"code_challenge": None},
        {"code_challenge": "short"},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ],
)
async def test_authorize_refuses_bad_requests_with_a_page(
    client: Client, emulator: ZoomEmulator, override: dict[str, str | None]
) -> None:
    params = authorize_params(new_verifier(), **override)

    async with client.get("/oauth/authorize", params=params, allow_redirects=False) as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
    assert emulator.counters["authorize"] == 0


async def test_authorize_enforces_allowed_redirect_uris(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.allowed_redirect_uris = {REDIRECT_URI}
    other = authorize_params(new_verifier(), redirect_uri=REDIRECT_URI + "/")

    async with client.get("/oauth/authorize", params=other, allow_redirects=False) as resp:
        assert resp.status == 400
    assert (await authorize(client, new_verifier())).query["code"]


async def test_consent_page_escapes_request_values(client: Client, emulator: ZoomEmulator) -> None:
    emulator.auto_approve = False
    params = authorize_params(new_verifier(), state='"><script>alert(1)</script>')

    async with client.get("/oauth/authorize", params=params) as resp:
        page = await resp.text()

    assert resp.status == 200
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


async def test_consent_page_approve_redirects_with_code(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.auto_approve = False
    verifier = new_verifier()
    form = {**authorize_params(verifier), "decision": "approve"}

    async with client.post("/oauth/authorize", data=form, allow_redirects=False) as resp:
        location = URL(resp.headers["Location"])

    assert resp.status == 302
    assert location.query["state"] == "s-123"
    status, _ = await exchange(client, location.query["code"], verifier)
    assert status == 200


async def test_consent_page_deny_redirects_with_access_denied(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.auto_approve = False
    form = {**authorize_params(new_verifier()), "decision": "deny"}

    async with client.post("/oauth/authorize", data=form, allow_redirects=False) as resp:
        location = URL(resp.headers["Location"])

    assert resp.status == 302
    assert dict(location.query) == {"error": "access_denied", "state": "s-123"}


# --- token: authorization_code ------------------------------------------------------------


async def test_code_flow_with_pkce_issues_tokens(client: Client) -> None:
    verifier = new_verifier()

    status, body = await exchange(client, await get_code(client, verifier), verifier)

    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3599
    assert body["scope"] == DEFAULT_SCOPE
    assert body["api_url"] == str(client.make_url("/").origin())
    assert body["access_token"] != body["refresh_token"]


async def test_requested_scope_is_granted(client: Client) -> None:
    verifier = new_verifier()
    location = await authorize(client, verifier, scope="user:read")

    _, body = await exchange(client, location.query["code"], verifier)

    assert body["scope"] == "user:read"


async def test_wrong_code_verifier_is_rejected(client: Client, emulator: ZoomEmulator) -> None:
    code = await get_code(client, new_verifier())

    status, body = await exchange(client, code, new_verifier())

    assert (status, body) == (400, INVALID_CODE)
    assert emulator.counters["code_rejected"] == 1


async def test_code_is_single_use(client: Client) -> None:
    verifier = new_verifier()
    code = await get_code(client, verifier)

    first, _ = await exchange(client, code, verifier)
    second, body = await exchange(client, code, verifier)

    assert first == 200
    assert (second, body) == (400, INVALID_CODE)


async def test_wrong_redirect_uri_is_rejected(client: Client) -> None:
    verifier = new_verifier()
    code = await get_code(client, verifier)

    status, body = await exchange(client, code, verifier, redirect_uri=REDIRECT_URI + "?x=1")

    assert (status, body) == (400, INVALID_CODE)


async def test_code_expires_after_ten_minutes(client: Client, clock: FakeClock) -> None:
    verifier = new_verifier()
    code = await get_code(client, verifier)
    clock.now += 601

    status, body = await exchange(client, code, verifier)

    assert (status, body) == (400, INVALID_CODE)


async def test_unknown_or_revoked_code_is_invalid_request(
    client: Client, emulator: ZoomEmulator
) -> None:
    verifier = new_verifier()
    code = await get_code(client, verifier)
    emulator.revoke_all()

    assert await exchange(client, code, verifier) == (400, INVALID_CODE)
    assert await exchange(client, "no-such-code", verifier) == (400, INVALID_CODE)


@pytest.mark.parametrize(
    "auth",
    [
        None,
        aiohttp.encode_basic_auth("emulator-client-id", "wrong"),
        aiohttp.encode_basic_auth("wrong", "emulator-client-secret"),
        "Basic !!!not-base64",
        "Bearer emulator-client-secret",
    ],
)
async def test_bad_client_credentials_get_invalid_client(client: Client, auth: str | None) -> None:
    verifier = new_verifier()
    code = await get_code(client, verifier)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}

    status, body = await token_call(client, {**data, "redirect_uri": REDIRECT_URI}, auth=auth)

    assert status == 401
    assert body == {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}


async def test_unsupported_grant_type_is_refused(client: Client) -> None:
    status, body = await token_call(client, {"grant_type": "client_credentials"})

    assert status == 400
    assert body["error"] == "unsupported_grant_type"


async def test_tokens_are_jwt_shaped_unique_and_realistically_long(client: Client) -> None:
    issued = [await sign_in(client) for _ in range(5)]
    values = [t.access_token for t in issued] + [t.refresh_token for t in issued]

    assert len(set(values)) == len(values)
    for value in values:
        assert 580 <= len(value) <= 640
        _, payload, signature = value.split(".")
        assert value.startswith("eyJ")
        assert json.loads(base64.urlsafe_b64decode(payload + "==")) is not None
        assert signature


# --- token: refresh_token -----------------------------------------------------------------


async def test_refresh_rotates_and_old_refresh_token_is_invalid(
    client: Client, emulator: ZoomEmulator
) -> None:
    first = await sign_in(client)

    status, body = await refresh(client, first.refresh_token)
    again, old_body = await refresh(client, first.refresh_token)

    assert status == 200
    assert body["refresh_token"] != first.refresh_token
    assert body["access_token"] != first.access_token
    assert (again, old_body) == (400, INVALID_TOKEN)
    assert emulator.counters["refresh_ok"] == 1
    assert emulator.counters["refresh_rejected"] == 1


async def test_rotated_refresh_token_refreshes_again(client: Client) -> None:
    _, second = await refresh(client, (await sign_in(client)).refresh_token)

    status, _ = await refresh(client, second["refresh_token"])

    assert status == 200


async def test_unknown_refresh_token_is_invalid(client: Client) -> None:
    assert await refresh(client, "eyJnope") == (400, INVALID_TOKEN)


async def test_old_access_token_works_after_refresh_until_expiry(
    client: Client, clock: FakeClock
) -> None:
    first = await sign_in(client)
    await refresh(client, first.refresh_token)

    status, _ = await api_get(client, "/v2/users/me", first.access_token)
    clock.now += 3599
    expired, body = await api_get(client, "/v2/users/me", first.access_token)

    assert status == 200
    assert (expired, body) == (401, {"code": 124, "message": "Access token is expired."})


async def test_token_lifetime_applies_to_later_tokens(
    client: Client, emulator: ZoomEmulator, clock: FakeClock
) -> None:
    before = await sign_in(client)
    emulator.token_lifetime = 30
    after = await sign_in(client)
    clock.now += 30

    assert after.body["expires_in"] == 30
    assert (await api_get(client, "/v2/users/me", before.access_token))[0] == 200
    assert (await api_get(client, "/v2/users/me", after.access_token))[0] == 401


# --- token endpoint modes -------------------------------------------------------------------


async def test_token_endpoint_down_answers_503(client: Client, emulator: ZoomEmulator) -> None:
    tokens = await sign_in(client)
    emulator.token_endpoint_mode = "down"

    status, body = await refresh(client, tokens.refresh_token)

    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert emulator.counters["refresh_ok"] == emulator.counters["refresh_rejected"] == 0


async def test_token_endpoint_garbage_answers_html(client: Client, emulator: ZoomEmulator) -> None:
    tokens = await sign_in(client)
    emulator.token_endpoint_mode = "garbage"
    data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}

    async with client.post("/oauth/token", data=data, headers={"Authorization": BASIC}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await resp.text())


async def test_token_endpoint_slow_answers_once_mode_changes(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    emulator.token_endpoint_mode = "slow"

    pending = asyncio.create_task(refresh(client, tokens.refresh_token))
    async with asyncio.timeout(5):
        await emulator.wait_for_stalled_token_requests(1)
    assert not pending.done()
    emulator.token_endpoint_mode = "ok"
    status, _ = await pending

    assert status == 200
    assert emulator.stalled_token_requests == 0


async def test_token_endpoint_slow_holds_every_request_until_it_goes_down(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    emulator.token_endpoint_mode = "slow"

    pending = [asyncio.create_task(refresh(client, tokens.refresh_token)) for _ in range(3)]
    async with asyncio.timeout(5):
        await emulator.wait_for_stalled_token_requests(3)
    emulator.token_endpoint_mode = "down"
    answers = await asyncio.gather(*pending)

    assert [status for status, _ in answers] == [503, 503, 503]


async def test_token_endpoint_mode_rejects_unknown_values(emulator: ZoomEmulator) -> None:
    with pytest.raises(ValueError, match="token_endpoint_mode"):
        emulator.token_endpoint_mode = "broken"


# --- revoke ---------------------------------------------------------------------------------


async def test_revoke_kills_access_and_refresh_tokens(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)

    async with client.post(
        "/oauth/revoke", params={"token": tokens.refresh_token}, headers={"Authorization": BASIC}
    ) as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "success"})

    assert await api_get(client, "/v2/users/me", tokens.access_token) == (
        401,
        {"code": 124, "message": "Invalid access token."},
    )
    assert await refresh(client, tokens.refresh_token) == (400, INVALID_TOKEN)
    assert emulator.counters["revoke"] == 1


async def test_revoking_a_rotated_token_ends_the_whole_chain(client: Client) -> None:
    first = await sign_in(client)
    _, second = await refresh(client, first.refresh_token)

    async with client.post(
        "/oauth/revoke", data={"token": first.access_token}, headers={"Authorization": BASIC}
    ) as resp:
        assert resp.status == 200

    assert (await api_get(client, "/v2/users/me", second["access_token"]))[0] == 401
    assert (await refresh(client, second["refresh_token"]))[0] == 400


async def test_revoke_needs_client_credentials(client: Client) -> None:
    tokens = await sign_in(client)

    async with client.post("/oauth/revoke", params={"token": tokens.access_token}) as resp:
        assert resp.status == 401
    assert (await api_get(client, "/v2/users/me", tokens.access_token))[0] == 200


async def test_revoke_all_ends_every_grant(client: Client, emulator: ZoomEmulator) -> None:
    tokens = [await sign_in(client) for _ in range(2)]

    emulator.revoke_all()

    for t in tokens:
        assert emulator.user_for(t.access_token) is None
        assert (await refresh(client, t.refresh_token))[0] == 400


# --- API ------------------------------------------------------------------------------------


async def test_users_me_returns_the_signed_in_user(client: Client, emulator: ZoomEmulator) -> None:
    tokens = await sign_in(client)

    status, body = await api_get(client, "/v2/users/me", tokens.access_token)

    assert status == 200
    assert body == emulator.user.as_json()
    assert {"id", "email", "account_id", "display_name"} <= body.keys()
    assert (body["type"], body["status"]) == (1, "active")


async def test_grant_keeps_the_user_who_approved_it(client: Client, emulator: ZoomEmulator) -> None:
    first = await sign_in(client)
    emulator.user = EmulatedUser("u2", "Grace", "Hopper", "grace@example.org", "acct2")
    second = await sign_in(client)

    assert emulator.user_for(first.access_token) != emulator.user
    assert emulator.user_for(second.access_token) == emulator.user
    assert (await api_get(client, "/v2/users/me", second.access_token))[1]["id"] == "u2"


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer eyJunknown", "Basic eHk6eg=="])
async def test_api_without_valid_bearer_token_is_401(
    client: Client, emulator: ZoomEmulator, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}

    async with client.get("/v2/users/me", headers=headers) as resp:
        assert resp.status == 401
        assert await resp.json() == {"code": 124, "message": "Invalid access token."}
    assert emulator.counters["api_401"] == 1


async def test_expire_access_tokens_gives_401_expired(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)

    emulator.expire_access_tokens()

    assert await api_get(client, "/v2/users/me", tokens.access_token) == (
        401,
        {"code": 124, "message": "Access token is expired."},
    )
    assert (await refresh(client, tokens.refresh_token))[0] == 200


async def test_unknown_api_path_is_404_after_auth(client: Client) -> None:
    tokens = await sign_in(client)

    assert await api_get(client, "/v2/nowhere", tokens.access_token) == (
        404,
        {"code": 404, "message": "Not found"},
    )
    assert (await api_get(client, "/v2/nowhere", "bad"))[0] == 401


async def test_meetings_created_show_in_the_list(client: Client) -> None:
    tokens = await sign_in(client)

    async with client.post(
        "/v2/users/me/meetings", json={"topic": "Standup", "duration": 15}, headers=bearer(tokens)
    ) as resp:
        created = await resp.json()
        assert resp.status == 201
    _, listing = await api_get(client, "/v2/users/me/meetings", tokens.access_token)

    assert isinstance(created["id"], int)
    assert (created["topic"], created["duration"]) == ("Standup", 15)
    assert str(created["id"]) in created["join_url"]
    assert listing["total_records"] == 1
    assert listing["page_size"] == 30
    assert listing["meetings"] == [created]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b'{"topic": 7}'])
async def test_meeting_create_with_bad_body_is_400_code_300(client: Client, body: bytes) -> None:
    tokens = await sign_in(client)
    headers = {**bearer(tokens), "Content-Type": "application/json"}

    async with client.post("/v2/users/me/meetings", data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == 300


# --- test-support routes -------------------------------------------------------------------


async def test_echo_shows_raw_path_byte_for_byte(client: Client) -> None:
    tokens = await sign_in(client)
    raw = "/v2/_test/echo/meetings/%252FajXp%253D%253D//recordings?a=%2F&b=x+y&c"

    async with client.get(URL(raw, encoded=True), headers=bearer(tokens)) as resp:
        body = await resp.json()

    assert body["raw_path"] == raw
    assert body["method"] == "GET"


async def test_echo_shows_headers_as_received_and_body_digest(client: Client) -> None:
    tokens = await sign_in(client)
    payload = b"hello zoom"
    headers = {**bearer(tokens), "X-MiXeD-Case": "a  b"}

    async with client.patch("/v2/_test/echo/x", data=payload, headers=headers) as resp:
        body = await resp.json()

    assert body["method"] == "PATCH"
    assert ["X-MiXeD-Case", "a  b"] in body["headers"]
    assert body["body_length"] == len(payload)
    assert body["body_sha256"] == hashlib.sha256(payload).hexdigest()


async def test_peer_port_tells_keep_alive_connections_apart(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    url = client.make_url("/v2/_test/echo/k")

    echoed = [(await api_get(client, "/v2/_test/echo/k", tokens.access_token))[1] for _ in "ab"]
    async with aiohttp.ClientSession() as other, other.get(url, headers=bearer(tokens)) as resp:
        echoed.append(await resp.json())

    ports = [body["peer_port"] for body in echoed]
    assert ports == [record.peer_port for record in emulator.api_requests]
    assert ports[0] == ports[1] != ports[2]
    assert ports[0] > 0


async def test_api_requests_are_recorded_before_the_auth_check(
    client: Client, emulator: ZoomEmulator
) -> None:
    async with client.put("/v2/_test/echo/%2Fx", data=b"abc") as resp:
        assert resp.status == 401

    [record] = emulator.api_requests
    assert (record.method, record.raw_path) == ("PUT", "/v2/_test/echo/%2Fx")
    assert record.body_length == 3
    assert record.body_sha256 == hashlib.sha256(b"abc").hexdigest()
    assert ("Content-Length", "3") in record.headers


async def test_download_streams_the_pattern_with_content_length(client: Client) -> None:
    tokens = await sign_in(client)
    size = 3 * 64 * 1024 + 17

    async with client.get(
        "/v2/_test/download", params={"bytes": str(size)}, headers=bearer(tokens)
    ) as resp:
        body = await resp.read()

    assert resp.headers["Content-Length"] == str(size)
    assert body == b"".join(download_chunks(size))
    assert body[70000] == 70000 % 256


async def test_download_rejects_bad_size(client: Client) -> None:
    tokens = await sign_in(client)

    status, body = await api_get(client, "/v2/_test/download?bytes=-1", tokens.access_token)

    assert (status, body["code"]) == (400, 300)


async def test_upload_reports_length_and_digest(client: Client) -> None:
    tokens = await sign_in(client)
    payload = secrets.token_bytes(200_000)

    async with client.put("/v2/_test/upload", data=payload, headers=bearer(tokens)) as resp:
        body = await resp.json()

    assert body == {"body_length": 200_000, "body_sha256": hashlib.sha256(payload).hexdigest()}


async def test_gzip_body_is_sent_precompressed(client: Client) -> None:
    tokens = await sign_in(client)

    async with client.get("/v2/_test/gzip", headers=bearer(tokens), auto_decompress=False) as resp:
        raw = await resp.read()

    assert resp.headers["Content-Encoding"] == "gzip"
    assert hashlib.sha256(raw).hexdigest() == resp.headers["X-Original-SHA256"]
    assert json.loads(gzip.decompress(raw))["items"][:3] == [0, 1, 2]


async def test_rate_limited_answers_like_zoom(client: Client, clock: FakeClock) -> None:
    tokens = await sign_in(client)

    async with client.get("/v2/_test/rate_limited", headers=bearer(tokens)) as resp:
        body = await resp.json()

    assert resp.status == 429
    assert body["code"] == 429
    assert email.utils.parsedate_to_datetime(resp.headers["Retry-After"]).timestamp() > clock.now
    assert resp.headers["X-RateLimit-Category"] == "Light"
    assert resp.headers["X-RateLimit-Type"] == "QPS"


async def test_set_cookie_route_sets_cookies(client: Client) -> None:
    tokens = await sign_in(client)

    async with client.get("/v2/_test/set_cookie", headers=bearer(tokens)) as resp:
        cookies = resp.headers.getall("Set-Cookie")

    assert resp.status == 200
    assert any(c.startswith("zm_aid=") and "Path=/" in c for c in cookies)


async def test_broken_download_ends_before_content_length(client: Client) -> None:
    tokens = await sign_in(client)

    async with client.get(
        "/v2/_test/broken", params={"bytes": "200000"}, headers=bearer(tokens)
    ) as resp:
        assert resp.headers["Content-Length"] == "200000"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_hold_headers_answers_only_once_released(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    path = "/v2/_test/hold_headers"

    pending = [asyncio.create_task(api_get(client, path, tokens.access_token)) for _ in "ab"]
    async with asyncio.timeout(5):
        await emulator.wait_for_held(2)
    assert not any(task.done() for task in pending)
    assert await api_get(client, path, "bad") == (
        401,
        {"code": 124, "message": "Invalid access token."},
    )
    assert emulator.held_requests == 2
    emulator.release_held()

    assert await asyncio.gather(*pending) == [(200, {"released": True})] * 2
    assert emulator.held_requests == 0
    assert await api_get(client, path, tokens.access_token) == (200, {"released": True})


async def test_hold_body_sends_half_then_the_rest_once_released(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    size = 3 * 64 * 1024 + 17

    async with client.get(
        "/v2/_test/hold_body", params={"bytes": str(size)}, headers=bearer(tokens)
    ) as resp:
        assert resp.headers["Content-Length"] == str(size)
        first = await resp.content.readexactly(size // 2)
        async with asyncio.timeout(5):
            await emulator.wait_for_held()
        emulator.release_held()
        rest = await resp.read()

    assert first + rest == b"".join(download_chunks(size))
    assert emulator.held_requests == 0


async def test_held_handlers_end_quietly_when_the_client_goes_away(
    client: Client, emulator: ZoomEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = await sign_in(client)
    held_headers = asyncio.create_task(
        api_get(client, "/v2/_test/hold_headers", tokens.access_token)
    )

    async with client.get(
        "/v2/_test/hold_body", params={"bytes": "1000"}, headers=bearer(tokens)
    ) as resp:
        await resp.content.readexactly(500)
        async with asyncio.timeout(5):
            await emulator.wait_for_held(2)
        resp.close()
    held_headers.cancel()
    async with asyncio.timeout(5):
        await emulator.wait_for_counter("holds_aborted", 2)

    assert emulator.held_requests == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- bookkeeping ----------------------------------------------------------------------------


async def test_counters_count_each_outcome(client: Client, emulator: ZoomEmulator) -> None:
    tokens = await sign_in(client)
    await refresh(client, tokens.refresh_token)
    await refresh(client, tokens.refresh_token)
    await exchange(client, "no-such-code", new_verifier())
    await api_get(client, "/v2/users/me", tokens.access_token)
    await api_get(client, "/v2/users/me", "nope")

    assert emulator.counters == {
        "token_requests": 4,
        "authorize": 1,
        "code_ok": 1,
        "code_rejected": 1,
        "refresh_ok": 1,
        "refresh_rejected": 1,
        "api_ok": 1,
        "api_401": 1,
    }


async def test_user_for_knows_only_valid_access_tokens(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)

    assert emulator.user_for(tokens.access_token) == emulator.user
    assert emulator.user_for(tokens.refresh_token) is None
    emulator.expire_access_tokens()
    assert emulator.user_for(tokens.access_token) is None


async def test_issued_tokens_lists_every_access_and_refresh_token(
    client: Client, emulator: ZoomEmulator
) -> None:
    first = await sign_in(client)
    _, second = await refresh(client, first.refresh_token)

    assert sorted(emulator.issued_tokens()) == sorted(
        [first.access_token, first.refresh_token, second["access_token"], second["refresh_token"]]
    )


async def test_no_code_token_or_secret_is_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = new_verifier()
    code = await get_code(client, verifier)
    _, body = await exchange(client, code, verifier)
    tokens = as_tokens(body)
    await refresh(client, tokens.refresh_token)
    await api_get(client, "/v2/users/me", tokens.access_token)
    async with client.post(
        "/oauth/revoke", params={"token": tokens.access_token}, headers={"Authorization": BASIC}
    ):
        pass

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "emulator POST /oauth/revoke 200" in logged
    for secret in (code, verifier, tokens.access_token, tokens.refresh_token, "client-secret"):
        assert secret not in logged


# --- token: account_credentials (Server-to-Server OAuth) --------------------------------------

ACCOUNT_SCOPE = "meeting:read:admin meeting:write:admin user:read:admin report:read:admin"
INVALID_CLIENT = {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
INVALID_ACCOUNT = {"reason": "Invalid account_id", "error": "invalid_request"}


def s2s_basic(emulator: ZoomEmulator) -> str:
    return aiohttp.encode_basic_auth(emulator.service_client_id, emulator.service_client_secret)


def account_grant(emulator: ZoomEmulator) -> dict[str, str]:
    return {"grant_type": "account_credentials", "account_id": emulator.account_id}


async def mint_account_token(client: Client, emulator: ZoomEmulator) -> tuple[int, Any]:
    return await token_call(client, account_grant(emulator), auth=s2s_basic(emulator))


async def new_account_token(client: Client, emulator: ZoomEmulator) -> str:
    status, body = await mint_account_token(client, emulator)
    assert status == 200, body
    token: str = body["access_token"]
    return token


async def test_account_credentials_issues_a_bearer_token_without_refresh_token(
    client: Client, emulator: ZoomEmulator
) -> None:
    status, body = await mint_account_token(client, emulator)

    assert status == 200
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "api_url"}
    assert (body["token_type"], body["scope"]) == ("bearer", ACCOUNT_SCOPE)
    assert body["api_url"] == str(client.make_url("/"))[:-1]
    assert emulator.counters["account_token_ok"] == 1


async def test_account_token_expires_in_3599_seconds(
    client: Client, emulator: ZoomEmulator
) -> None:
    _, body = await mint_account_token(client, emulator)

    assert body["expires_in"] == 3599


async def test_account_token_is_zoom_sized_and_jwt_shaped(
    client: Client, emulator: ZoomEmulator
) -> None:
    token = await new_account_token(client, emulator)

    _, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert 580 <= len(token) <= 640
    assert claims["iss"] == f"zm:cid:{emulator.service_client_id}"


async def test_account_token_calls_the_api_as_the_account_owner(
    client: Client, emulator: ZoomEmulator
) -> None:
    token = await new_account_token(client, emulator)

    status, body = await api_get(client, "/v2/users/me", token)

    assert status == 200
    assert body == emulator.user.as_json()
    assert emulator.user_for(token) == emulator.user


async def test_minting_another_account_token_keeps_the_first_valid(
    client: Client, emulator: ZoomEmulator
) -> None:
    first = await new_account_token(client, emulator)
    second = await new_account_token(client, emulator)

    assert first != second
    assert (await api_get(client, "/v2/users/me", first))[0] == 200
    assert (await api_get(client, "/v2/users/me", second))[0] == 200
    assert emulator.counters["account_token_ok"] == 2


@pytest.mark.parametrize(
    "auth",
    [
        None,
        aiohttp.encode_basic_auth("emulator-s2s-client-id", "wrong"),
        aiohttp.encode_basic_auth("wrong", "emulator-s2s-client-secret"),
        "Basic !!!not-base64",
        "Bearer emulator-s2s-client-secret",
    ],
)
async def test_account_credentials_with_bad_basic_auth_is_invalid_client(
    client: Client, emulator: ZoomEmulator, auth: str | None
) -> None:
    status, body = await token_call(client, account_grant(emulator), auth=auth)

    assert (status, body) == (401, INVALID_CLIENT)
    assert emulator.counters["account_token_invalid_client"] == 1
    assert emulator.counters["account_token_ok"] == 0


async def test_account_credentials_refuses_the_user_apps_credentials(
    client: Client, emulator: ZoomEmulator
) -> None:
    status, body = await token_call(client, account_grant(emulator), auth=BASIC)

    assert (status, body) == (401, INVALID_CLIENT)
    assert emulator.counters["account_token_invalid_client"] == 1


async def test_user_grants_refuse_the_s2s_apps_credentials(
    client: Client, emulator: ZoomEmulator
) -> None:
    tokens = await sign_in(client)
    data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}

    status, body = await token_call(client, data, auth=s2s_basic(emulator))

    assert (status, body) == (401, INVALID_CLIENT)
    assert (await refresh(client, tokens.refresh_token))[0] == 200


@pytest.mark.parametrize("account_id", ["someone-elses-account", "", None])
async def test_account_credentials_with_wrong_or_no_account_id_is_invalid_request(
    client: Client, emulator: ZoomEmulator, account_id: str | None
) -> None:
    data = {"grant_type": "account_credentials"}
    if account_id is not None:
        data["account_id"] = account_id

    status, body = await token_call(client, data, auth=s2s_basic(emulator))

    assert (status, body) == (400, INVALID_ACCOUNT)
    assert emulator.counters["account_token_rejected"] == 1
    assert emulator.counters["account_token_ok"] == 0


async def test_account_token_expires_by_the_clock(
    client: Client, emulator: ZoomEmulator, clock: FakeClock
) -> None:
    token = await new_account_token(client, emulator)

    clock.now += 3598
    still, _ = await api_get(client, "/v2/users/me", token)
    clock.now += 1
    expired, body = await api_get(client, "/v2/users/me", token)

    assert still == 200
    assert (expired, body) == (401, {"code": 124, "message": "Access token is expired."})


async def test_expire_access_tokens_expires_account_tokens(
    client: Client, emulator: ZoomEmulator
) -> None:
    token = await new_account_token(client, emulator)

    emulator.expire_access_tokens()

    assert await api_get(client, "/v2/users/me", token) == (
        401,
        {"code": 124, "message": "Access token is expired."},
    )


async def test_revoke_all_ends_account_tokens(client: Client, emulator: ZoomEmulator) -> None:
    token = await new_account_token(client, emulator)

    emulator.revoke_all()

    assert emulator.user_for(token) is None


async def test_account_credentials_honours_token_endpoint_down(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.token_endpoint_mode = "down"

    status, body = await mint_account_token(client, emulator)

    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert emulator.counters["account_token_ok"] == 0
    assert emulator.counters["token_requests"] == 1


async def test_account_credentials_honours_token_endpoint_slow(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.token_endpoint_mode = "slow"

    pending = asyncio.create_task(mint_account_token(client, emulator))
    async with asyncio.timeout(5):
        await emulator.wait_for_stalled_token_requests(1)
    assert not pending.done()
    emulator.token_endpoint_mode = "ok"
    status, _ = await pending

    assert status == 200


async def test_account_credentials_honours_token_endpoint_garbage(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.token_endpoint_mode = "garbage"

    async with client.post(
        "/oauth/token", data=account_grant(emulator), headers={"Authorization": s2s_basic(emulator)}
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
    assert emulator.counters["account_token_ok"] == 0


async def test_account_token_grant_logs_no_token_or_secret(
    client: Client, emulator: ZoomEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    token = await new_account_token(client, emulator)
    await api_get(client, "/v2/users/me", token)

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged
    assert emulator.service_client_secret not in logged
