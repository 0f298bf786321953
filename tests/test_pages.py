"""The pages a person sees: sign-out confirmation, error pages, the favicon, and the
emulator's consent page."""

from __future__ import annotations

import json

from aiohttp import web
from pytest_aiohttp import AiohttpClient

from proxy.web.errors import error_middleware
from proxy.web.pages import STYLE
from tests.helpers.proxies import Proxy

#: What a browser's navigation sends.
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
LOGOUT_FORM = '<form method=post action="/auth/logout"><button type=submit>Sign out</button>'


async def me_status(proxy: Proxy) -> int:
    async with proxy.client.get(f"{proxy.url}/auth/me") as response:
        return response.status


def tiny_app(**routes: tuple[str, ...]) -> web.Application:
    """An app behind the proxy's error translation, with ``routes``: a name's path
    answers only the given methods."""

    async def handler(request: web.Request) -> web.Response:
        raise RuntimeError("broken on purpose")

    app = web.Application(middlewares=[error_middleware(lambda request: None)])
    for name, methods in routes.items():
        for method in methods:
            app.router.add_route(method, f"/{name}", handler)
    return app


# --- signing out ----------------------------------------------------------------------


async def test_a_browsers_get_of_logout_offers_a_form_that_posts(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/logout", headers=BROWSER) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
    assert "<h1>Sign out of zoom-proxy?</h1>" in page
    assert LOGOUT_FORM in page
    assert '<a class="button secondary" href="/">Cancel</a>' in page


async def test_a_browsers_get_of_logout_signs_nobody_out(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/logout", headers=BROWSER) as response:
        assert response.status == 200
        assert "Set-Cookie" not in response.headers
    assert signed_in.zoom.emulator.counters["revoke"] == 0
    assert await me_status(signed_in) == 200


async def test_the_sign_out_page_shows_no_token_or_cookie_value(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/logout", headers=BROWSER) as response:
        page = await response.text()
    secrets = [*signed_in.session_cookies().values(), *signed_in.zoom.emulator.issued_tokens()]
    assert secrets
    assert not [secret for secret in secrets if secret in page]


async def test_a_scripts_get_of_logout_is_still_405_json(signed_in: Proxy) -> None:
    async with signed_in.client.get(
        f"{signed_in.url}/auth/logout", headers={"Accept": "application/json"}
    ) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert await response.json() == {
            "error": "method_not_allowed",
            "message": "Method Not Allowed",
        }
    assert await me_status(signed_in) == 200


async def test_the_confirm_forms_post_signs_out_and_lands_on_the_home_page(
    signed_in: Proxy,
) -> None:
    # What a browser sends for the form: same-origin, form-encoded, an empty body.
    headers = {
        **BROWSER,
        "Origin": signed_in.url,
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with signed_in.client.post(
        f"{signed_in.url}/auth/logout", data=b"", headers=headers
    ) as response:
        assert response.status == 200
        assert response.url.path == "/"
        assert [r.status for r in response.history] == [303]
        page = await response.text()
    assert "Sign in with Zoom" in page
    assert signed_in.zoom.emulator.counters["revoke"] == 1
    assert await me_status(signed_in) == 401


# --- error pages ----------------------------------------------------------------------


async def test_the_404_page_says_there_is_no_page_and_links_home(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/no/such/page", headers=BROWSER) as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        page = await response.text()
    assert "<h1>Page not found</h1>" in page
    assert "There is no page at this address." in page
    assert '<a class=button href="/">Go to the home page</a>' in page
    assert "Start again" not in page
    assert "/auth/login" not in page


async def test_a_404_under_auth_is_a_404_page_not_a_sign_in_problem(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/auth/nope", headers=BROWSER) as response:
        assert response.status == 404
        page = await response.text()
    assert "There is no page at this address." in page
    assert "Sign-in problem" not in page


async def test_the_404_page_does_not_echo_the_address(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/%3Cscript%3Ex", headers=BROWSER) as response:
        assert response.status == 404
        page = await response.text()
    assert "<script>" not in page
    assert "script" not in page


async def test_a_scripts_404_is_the_same_json_as_before(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/no/such/page") as response:
        assert response.status == 404
        assert json.loads(await response.text()) == {
            "error": "not_found",
            "message": "Not Found",
        }


async def test_the_405_page_says_which_methods_the_address_takes(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(tiny_app(submit=("POST", "PUT")))
    async with client.get("/submit", headers=BROWSER) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST,PUT"
        page = await response.text()
    assert "<h1>Method not allowed</h1>" in page
    assert "This address takes only POST or PUT requests, not GET." in page
    assert 'href="/"' in page


async def test_a_server_error_page_offers_to_try_the_same_address_again(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(tiny_app(broken=("GET",)))
    async with client.get("/broken?x=1", headers=BROWSER) as response:
        assert response.status == 500
        page = await response.text()
    assert "<h1>Something went wrong</h1>" in page
    assert "The proxy failed; this is a bug." in page
    assert '<a class=button href="">Try again</a>' in page


async def test_a_sign_in_problem_offers_to_start_again_without_showing_the_code(
    proxy: Proxy,
) -> None:
    async with proxy.client.get(
        f"{proxy.url}/auth/callback",
        params={"code": "the-secret-code", "state": "the-state"},
        headers=BROWSER,
    ) as response:
        assert response.status == 400
        page = await response.text()
    assert "<h1>Sign-in problem</h1>" in page
    assert '<a class=button href="/auth/login">Start again</a>' in page
    assert "the-secret-code" not in page
    assert "the-state" not in page


# --- the favicon ----------------------------------------------------------------------


async def test_the_favicon_is_an_icon_cached_for_long(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/favicon.ico", headers=BROWSER) as response:
        assert response.status == 200
        assert response.content_type == "image/x-icon"
        cache_control = response.headers["Cache-Control"]
        body = await response.read()
    assert body.startswith(b"\x00\x00\x01\x00\x01\x00")  # an ICO holding one image
    assert b"\x89PNG" in body
    assert "public" in cache_control
    max_age = int(cache_control.split("max-age=")[1].split(",")[0])
    assert max_age >= 7 * 24 * 3600


async def test_the_favicon_needs_no_session_and_sets_no_cookie(proxy: Proxy) -> None:
    async with proxy.new_client().get(f"{proxy.url}/favicon.ico") as response:
        assert response.status == 200
        assert "Set-Cookie" not in response.headers


# --- the emulator's consent page ------------------------------------------------------


async def consent_page(proxy: Proxy) -> str:
    proxy.zoom.emulator.auto_approve = False
    async with proxy.client.get(f"{proxy.url}/auth/login", headers=BROWSER) as response:
        assert response.status == 200
        assert response.url.path == "/oauth/authorize"
        return await response.text()


async def test_the_consent_page_says_it_is_the_emulator_not_zoom(proxy: Proxy) -> None:
    page = await consent_page(proxy)
    assert "This is the built-in Zoom emulator (not Zoom)" in page
    assert "<title>Authorize app - Zoom emulator</title>" in page


async def test_the_consent_page_is_styled_like_the_proxys_pages(proxy: Proxy) -> None:
    page = await consent_page(proxy)
    assert f"<style>{STYLE}</style>" in page
    assert '<button name="decision" value="approve">Approve</button>' in page
    assert '<button class="secondary" name="decision" value="deny">Deny</button>' in page
