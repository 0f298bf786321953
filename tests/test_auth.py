"""Sign-in, sign-out and "who am I", end to end through the proxy and the emulator."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
from cryptography.fernet import Fernet
from yarl import URL

from tests.helpers.proxies import SESSION_KEY, Proxy, ProxyFactory, Zoom


async def start_login(
    proxy: Proxy, client: aiohttp.ClientSession, next_path: str = "/"
) -> tuple[str, dict[str, str]]:
    """``/auth/login`` without following: the Zoom URL and its query."""
    async with client.get(
        f"{proxy.url}/auth/login", params={"next": next_path}, allow_redirects=False
    ) as response:
        assert response.status == 302
        location = response.headers["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def zoom_code(
    proxy: Proxy, client: aiohttp.ClientSession, authorize_url: str
) -> tuple[str, str]:
    """Let the emulator approve; return the callback's code and state."""
    async with client.get(authorize_url, allow_redirects=False) as response:
        assert response.status == 302
        query = parse_qs(urlsplit(response.headers["Location"]).query)
    return query["code"][0], query["state"][0]


async def callback(
    proxy: Proxy, client: aiohttp.ClientSession, **params: str
) -> aiohttp.ClientResponse:
    async with client.get(
        f"{proxy.url}/auth/callback", params=params, allow_redirects=False
    ) as response:
        await response.read()
        return response


async def me_status(proxy: Proxy, client: aiohttp.ClientSession) -> int:
    async with client.get(f"{proxy.url}/auth/me") as response:
        return response.status


async def test_login_sends_state_and_pkce_s256_to_zoom(proxy: Proxy) -> None:
    location, query = await start_login(proxy, proxy.client)
    assert location.startswith(proxy.settings.zoom.authorize_url + "?")
    assert query["response_type"] == "code"
    assert query["client_id"] == "emulator-client-id"
    assert query["redirect_uri"] == f"{proxy.url}/auth/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(base64.urlsafe_b64decode(query["state"] + "==")) >= 16
    assert len(base64.urlsafe_b64decode(query["code_challenge"] + "=")) == 32


async def test_two_logins_get_different_states(proxy: Proxy) -> None:
    _, first = await start_login(proxy, proxy.client)
    _, second = await start_login(proxy, proxy.new_client())
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]


async def test_login_state_cookie_is_httponly_lax_short_lived_and_encrypted(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/auth/login", allow_redirects=False) as response:
        state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
        morsel = response.cookies["zoom_proxy_login"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/auth/"
    assert 0 < int(morsel["max-age"]) <= 600
    sealed = base64.urlsafe_b64decode(morsel.value + "=" * (-len(morsel.value) % 4))
    assert state not in morsel.value
    assert state.encode() not in sealed


async def test_an_expired_login_state_cookie_is_refused(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    code, state = await zoom_code(proxy, proxy.client, location)
    (sealed,) = [c.value for c in proxy.client.cookie_jar if c.key == "zoom_proxy_login"]
    fernet = Fernet(SESSION_KEY)
    stale = fernet.encrypt_at_time(fernet.decrypt(sealed.encode()), int(time.time()) - 601)
    stale_browser = proxy.new_client()
    stale_browser.cookie_jar.update_cookies(
        {"zoom_proxy_login": stale.decode()}, URL(f"{proxy.url}/auth/")
    )
    assert (await callback(proxy, stale_browser, code=code, state=state)).status == 400
    assert proxy.zoom.emulator.counters["code_ok"] == 0


async def test_sign_in_lands_on_next_with_a_session(proxy: Proxy) -> None:
    await proxy.sign_in(next_path="/auth/me")
    assert proxy.zoom.emulator.counters["code_ok"] == 1
    assert await me_status(proxy, proxy.client) == 200


async def test_an_unacceptable_next_lands_on_root(proxy: Proxy) -> None:
    async with proxy.client.get(
        f"{proxy.url}/auth/login", params={"next": "//evil.example/x"}
    ) as response:
        assert response.status == 200
        assert str(response.url) == f"{proxy.url}/"
    assert await me_status(proxy, proxy.client) == 200


async def test_callback_with_a_wrong_state_is_400_and_no_code_is_exchanged(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    code, _ = await zoom_code(proxy, proxy.client, location)
    response = await callback(proxy, proxy.client, code=code, state="forged")
    assert response.status == 400
    assert proxy.zoom.emulator.counters["code_ok"] == 0
    assert await me_status(proxy, proxy.client) == 401


async def test_callback_in_another_browser_is_400(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    code, state = await zoom_code(proxy, proxy.client, location)
    other = proxy.new_client()
    response = await callback(proxy, other, code=code, state=state)
    assert response.status == 400
    assert await me_status(proxy, other) == 401
    assert proxy.zoom.emulator.counters["code_ok"] == 0


async def test_a_replayed_callback_is_400(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    code, state = await zoom_code(proxy, proxy.client, location)
    assert (await callback(proxy, proxy.client, code=code, state=state)).status == 302
    cookie_before = proxy.cookie_header()
    replay = await callback(proxy, proxy.client, code=code, state=state)
    assert replay.status == 400
    assert proxy.cookie_header() == cookie_before
    assert proxy.zoom.emulator.counters["code_ok"] == 1


async def test_the_login_state_cookie_is_cleared_after_use(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    code, state = await zoom_code(proxy, proxy.client, location)
    response = await callback(proxy, proxy.client, code=code, state=state)
    assert response.cookies["zoom_proxy_login"]["max-age"] == "0"


async def test_an_invalid_code_with_a_valid_state_is_400(proxy: Proxy) -> None:
    location, _ = await start_login(proxy, proxy.client)
    _, state = await zoom_code(proxy, proxy.client, location)
    response = await callback(proxy, proxy.client, code="not-a-code", state=state)
    assert response.status == 400
    assert proxy.zoom.emulator.counters["code_rejected"] == 1
    assert await me_status(proxy, proxy.client) == 401


async def test_a_marketplace_callback_without_state_restarts_sign_in(proxy: Proxy) -> None:
    response = await callback(proxy, proxy.client, code="from-marketplace")
    assert response.status == 302
    assert response.headers["Location"] == "/auth/login"
    assert (
        proxy.zoom.emulator.counters["code_ok"] + proxy.zoom.emulator.counters["code_rejected"] == 0
    )


async def test_a_declined_consent_clears_the_login_state(proxy: Proxy) -> None:
    await start_login(proxy, proxy.client)
    response = await callback(proxy, proxy.client, error="access_denied", state="x")
    assert response.cookies["zoom_proxy_login"]["max-age"] == "0"


async def test_a_declined_consent_gets_a_friendly_page(proxy: Proxy) -> None:
    async with proxy.client.get(
        f"{proxy.url}/auth/callback",
        params={"error": "access_denied", "state": "x"},
        headers={"Accept": "text/html"},
    ) as response:
        body = await response.text()
        assert response.content_type == "text/html"
    assert "chose not to allow access" in body
    assert 'href="/auth/login"' in body


async def test_every_sign_in_mints_a_new_session(proxy: Proxy) -> None:
    await proxy.sign_in()
    first = proxy.cookie_header()
    await proxy.sign_in()
    assert proxy.cookie_header() != first


async def test_access_rules_refuse_sign_in_with_403_and_revoke(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(access={"allowed_email_domains": ["example.org"]})
    async with proxy.client.get(f"{proxy.url}/auth/login") as response:
        assert response.status == 403
    assert await me_status(proxy, proxy.client) == 401
    assert proxy.zoom.emulator.counters["revoke"] == 1


async def test_access_rules_admit_a_listed_account(make_proxy: ProxyFactory, zoom: Zoom) -> None:
    proxy = await make_proxy(access={"allowed_account_ids": [zoom.emulator.user.account_id]})
    await proxy.sign_in()
    assert await me_status(proxy, proxy.client) == 200


async def test_me_returns_the_user_and_expiry_but_no_token(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/me") as response:
        body = await response.json()
        raw = await response.text()
    user = signed_in.zoom.emulator.user
    assert body["user"]["id"] == user.id
    assert body["user"]["email"] == user.email
    assert isinstance(body["expires_at"], int)
    tokens = signed_in.zoom.emulator.issued_tokens()
    assert tokens
    assert not any(token in raw for token in tokens)


async def test_me_signed_out_is_401(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/auth/me") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"]
        assert (await response.json())["error"] == "unauthenticated"


async def test_get_logout_is_405_and_signs_nobody_out(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/logout") as response:
        assert response.status == 405
    assert await me_status(signed_in, signed_in.client) == 200


async def test_logout_revokes_at_zoom_and_clears_the_session(signed_in: Proxy) -> None:
    copied = signed_in.cookie_header()
    async with signed_in.client.post(f"{signed_in.url}/auth/logout") as response:
        assert response.status == 204
    assert signed_in.zoom.emulator.counters["revoke"] == 1
    assert await me_status(signed_in, signed_in.client) == 401
    async with signed_in.new_client().get(
        f"{signed_in.url}/api/users/me", headers={"Cookie": copied}
    ) as response:
        assert response.status == 401


async def test_logout_from_a_form_redirects_home(signed_in: Proxy) -> None:
    async with signed_in.client.post(
        f"{signed_in.url}/auth/logout", data={"x": "1"}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/"


async def test_logout_from_a_script_is_204(signed_in: Proxy) -> None:
    async with signed_in.client.post(f"{signed_in.url}/auth/logout", json={}) as response:
        assert response.status == 204


def parse_jar(text: str) -> dict[str, list[str]]:
    return {
        fields[5]: fields
        for line in text.splitlines()
        if line and (line.startswith("#HttpOnly_") or not line.startswith("#"))
        for fields in [line.split("\t")]
    }


async def test_cookiejar_hands_out_the_session_in_netscape_format(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/cookiejar") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert "attachment" in response.headers["Content-Disposition"]
        jar = parse_jar(await response.text())
    assert {name: fields[6] for name, fields in jar.items()} == signed_in.session_cookies()
    assert all(fields[0] == "#HttpOnly_127.0.0.1" and fields[2] == "/" for fields in jar.values())


async def test_cookiejar_is_refused_to_cross_site_requests(signed_in: Proxy) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/auth/cookiejar", headers={"Sec-Fetch-Site": "cross-site"}
    ) as response:
        assert response.status == 403
        assert "zoom_proxy" not in await response.text()


async def test_cookiejar_is_refused_even_to_an_allowed_cors_origin(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(cors={"allowed_origins": ["http://127.0.0.1:5173"]})
    await proxy.sign_in()
    async with proxy.client.get(
        f"{proxy.url}/auth/cookiejar",
        headers={"Origin": "http://127.0.0.1:5173", "Sec-Fetch-Site": "same-site"},
    ) as response:
        assert response.status == 403
        assert "zoom_proxy" not in await response.text()


async def test_cookiejar_signed_out_is_401(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/auth/cookiejar") as response:
        assert response.status == 401


async def test_me_signed_out_in_a_browser_is_a_401_page_not_a_redirect(proxy: Proxy) -> None:
    async with proxy.client.get(
        f"{proxy.url}/auth/me", headers={"Accept": "text/html"}, allow_redirects=False
    ) as response:
        assert response.status == 401
        assert response.content_type == "text/html"
        assert f'href="{proxy.url}/auth/login"' in await response.text()
