"""End to end in a real browser: Debian's headless Chromium, driven by Playwright.

Every test signs in the way a person does: the "Sign in with Zoom" link, then
*Approve* on the emulator's consent page. Pages talk to the proxy with ``fetch``;
the emulator's counters and ``api_requests`` show what reached Zoom. Nothing sleeps:
Playwright's auto-waiting and ``expect`` do the synchronisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from multidict import CIMultiDict
from playwright.async_api import Browser, Page, async_playwright, expect

from proxy.demo import DEMO_RECORDING_SIZE
from tests.helpers.processes import demo_banner, running
from tests.helpers.proxies import Proxy, ProxyFactory, Zoom

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FRONTEND = Path(__file__).resolve().parent.parent / "examples" / "frontend"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
)

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
    # Headless Chromium in a container without D-Bus has died mid-test once in CI
    # (Playwright: "Target page, context or browser has been closed"). Only that is
    # run again; any failure of the proxy fails at once.
    pytest.mark.flaky(reruns=2, only_rerun=["Target page, context or browser has been closed"]),
]

SiteStarter = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    context.set_default_timeout(10_000)
    yield await context.new_page()
    await context.close()


@pytest.fixture
async def start_site() -> AsyncIterator[SiteStarter]:
    """Serve an aiohttp app on a free loopback port; returns its origin."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def frontend_app() -> web.Application:
    """examples/frontend/ under /app/."""
    app = web.Application()
    app.router.add_static("/app", FRONTEND)
    return app


def add_forwarding(app: web.Application, target: list[str]) -> None:
    """Pass /api/ and /auth/ through to ``target[0]``, streaming, cookies and all."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}
        )
        async with client.request(
            request.method,
            target[0] + request.raw_path,
            headers=headers,
            data=request.content.iter_any() if request.body_exists else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers=CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                ),
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def close(_: web.Application) -> None:
        await client.close()

    app.router.add_route("*", "/api/{tail:.*}", forward)
    app.router.add_route("*", "/auth/{tail:.*}", forward)
    app.on_cleanup.append(close)


@pytest.fixture
async def front(make_proxy: ProxyFactory, start_site: SiteStarter) -> Proxy:
    """The example frontend and the proxy behind one origin, as a front proxy serves them.

    The proxy's ``public_url`` is the front's, so cookies, redirects and ``login_url``
    all point at the front.
    """
    target: list[str] = []
    app = frontend_app()
    add_forwarding(app, target)
    proxy = await make_proxy(public_url=await start_site(app))
    target.append(f"http://127.0.0.1:{proxy.settings.listen.port}")
    return proxy


async def approve_at_zoom(page: Page, zoom: Zoom) -> None:
    await expect(page.get_by_text("Allow this app to use Zoom as Ada Lovelace")).to_be_visible()
    assert page.url.startswith(f"{zoom.base_url}/oauth/authorize?")
    await page.get_by_role("button", name="Approve").click()


async def sign_in(page: Page, proxy: Proxy) -> None:
    """Click "Sign in with Zoom" on the built-in page, then approve at the emulator."""
    proxy.zoom.emulator.auto_approve = False
    await page.goto(f"{proxy.url}/")
    await page.get_by_role("link", name="Sign in with Zoom").click()
    await approve_at_zoom(page, proxy.zoom)
    await expect(page.get_by_text("Signed in as Ada Lovelace")).to_be_visible()
    # The page's own call to Zoom (its list of recordings) is over before the test's.
    await expect(page.locator("#recordings")).to_have_text("None found.")


async def sign_in_through_example(page: Page, front: Proxy) -> None:
    """Open the example signed out: its 401 sends the browser to Zoom, then back."""
    front.zoom.emulator.auto_approve = False
    await page.goto(f"{front.url}/app/index.html")
    await approve_at_zoom(page, front.zoom)
    await expect(page.locator("#user-name")).to_have_text("Ada Lovelace")


async def page_fetch(page: Page, url: str, init: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fetch(url, init)`` from the page: its status and JSON body (None without one)."""
    result = await page.evaluate(
        """async ([url, init]) => {
            const response = await fetch(url, init);
            const text = await response.text();
            return {status: response.status, body: text ? JSON.parse(text) : null};
        }""",
        [url, init or {}],
    )
    assert isinstance(result, dict)
    return result


async def test_sign_in_by_clicking_through_the_consent_page(
    page: Page, proxy: Proxy, tmp_path: Path
) -> None:
    await sign_in(page, proxy)
    assert page.url == f"{proxy.url}/"
    await expect(page.get_by_text("ada@example.com")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert proxy.zoom.emulator.counters["code_ok"] == 1
    screenshot = tmp_path / "signed-in.png"
    await page.screenshot(path=screenshot, full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")


async def test_fetch_users_me_from_the_page(page: Page, proxy: Proxy) -> None:
    await sign_in(page, proxy)
    result = await page_fetch(page, "/api/users/me")
    assert result == {"status": 200, "body": proxy.zoom.emulator.user.as_json()}


async def test_same_origin_post_creates_a_meeting(page: Page, proxy: Proxy) -> None:
    await sign_in(page, proxy)
    result = await page_fetch(
        page,
        "/api/users/me/meetings",
        {
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": '{"topic": "Browser standup", "type": 2}',
        },
    )
    assert result["status"] == 201
    assert result["body"]["topic"] == "Browser standup"
    meetings = proxy.zoom.emulator.meetings[proxy.zoom.emulator.user.id]
    assert [m["topic"] for m in meetings] == ["Browser standup"]


async def test_cross_origin_credentialed_posts_never_reach_zoom(
    page: Page, proxy: Proxy, start_site: SiteStarter
) -> None:
    target = f"{proxy.url}/api/users/me/meetings"
    evil = web.Application()

    async def attacker_page(_: web.Request) -> web.Response:
        # text/plain: a form the browser may send cross-origin without a preflight.
        form = (
            f'<form method="post" action="{target}" enctype="text/plain">'
            '<input type="hidden" name=\'{"topic": "form", "type": 2, "x": "\' value=\'"}\'>'
            "<button>Win a prize</button></form>"
        )
        return web.Response(
            text=f"<!doctype html><title>evil</title>{form}", content_type="text/html"
        )

    evil.router.add_get("/", attacker_page)
    evil_url = await start_site(evil)
    await sign_in(page, proxy)
    await page.goto(f"{evil_url}/")
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.request.method, r.status)))

    outcomes = await page.evaluate(
        """async (target) => {
            const body = JSON.stringify({topic: "fetch", type: 2});
            const attempt = (init) =>
                fetch(target, {method: "POST", credentials: "include", ...init})
                    .then((response) => response.type, (error) => error.name);
            return [
                // Preflighted: the proxy refuses the preflight, so the POST is never sent.
                await attempt({headers: {"Content-Type": "application/json"}, body}),
                // A "simple" request is sent, with the cookie, and refused by the proxy.
                await attempt({mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
                // Control: a cross-origin GET carries the cookie through to Zoom.
                await fetch(target, {mode: "no-cors", credentials: "include"})
                    .then((response) => response.type),
            ];
        }""",
        target,
    )
    assert outcomes == ["TypeError", "opaque", "opaque"]
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Win a prize").click()
    response = await navigation.value
    assert response is not None
    assert response.status == 403

    # The sent POSTs came back 403 from the proxy; only the sign-in's, the signed-in
    # page's (its recordings) and the control's GETs reached Zoom.
    assert [status for method, status in answers if method == "POST"] == [403, 403]
    assert [(r.method, r.raw_path) for r in proxy.zoom.emulator.api_requests] == [
        ("GET", "/v2/users/me"),
        ("GET", "/v2/users/me/recordings"),
        ("GET", "/v2/users/me/meetings"),
    ]
    assert proxy.zoom.emulator.meetings == {}


async def test_example_frontend_from_an_allowed_origin_lists_meetings(
    page: Page, make_proxy: ProxyFactory, start_site: SiteStarter
) -> None:
    site = await start_site(frontend_app())
    proxy = await make_proxy(cors={"allowed_origins": [site]})
    emulator = proxy.zoom.emulator
    emulator.meetings[emulator.user.id] = [
        {"id": 1, "topic": "Planning", "start_time": "2030-01-02T15:00:00Z"}
    ]
    await sign_in(page, proxy)
    await page.goto(f"{site}/app/index.html?proxy={proxy.url}")
    await expect(page.locator("#user-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#meetings li")).to_have_count(1)
    await expect(page.locator("#meetings li")).to_contain_text("Planning")


async def test_example_frontend_from_an_allowed_origin_creates_a_meeting(
    page: Page, make_proxy: ProxyFactory, start_site: SiteStarter
) -> None:
    site = await start_site(frontend_app())
    proxy = await make_proxy(cors={"allowed_origins": [site]})
    await sign_in(page, proxy)
    await page.goto(f"{site}/app/index.html?proxy={proxy.url}")
    await page.get_by_label("New meeting").fill("Cross-origin sync")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#meetings li")).to_contain_text("Cross-origin sync")
    emulator = proxy.zoom.emulator
    assert [m["topic"] for m in emulator.meetings[emulator.user.id]] == ["Cross-origin sync"]


async def test_example_frontend_on_the_proxy_origin_signs_in_on_401_and_returns(
    page: Page, front: Proxy
) -> None:
    await sign_in_through_example(page, front)
    assert page.url == f"{front.url}/app/index.html"
    await expect(page.get_by_text("No meetings yet.")).to_be_visible()


async def test_example_frontend_on_the_proxy_origin_creates_a_meeting(
    page: Page, front: Proxy
) -> None:
    await sign_in_through_example(page, front)
    await page.get_by_label("New meeting").fill("Same-origin retro")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("status")).to_have_text("Created “Same-origin retro”.")
    await expect(page.locator("#meetings li")).to_contain_text("Same-origin retro")
    emulator = front.zoom.emulator
    assert [m["topic"] for m in emulator.meetings[emulator.user.id]] == ["Same-origin retro"]


async def test_an_expired_access_token_is_refreshed_transparently(page: Page, proxy: Proxy) -> None:
    await sign_in(page, proxy)
    proxy.zoom.emulator.expire_access_tokens()
    result = await page_fetch(page, "/api/users/me")
    assert result["status"] == 200
    assert result["body"]["id"] == proxy.zoom.emulator.user.id
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1


async def test_sign_out_button_ends_the_session_and_revokes(page: Page, proxy: Proxy) -> None:
    await sign_in(page, proxy)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("link", name="Sign in with Zoom")).to_be_visible()
    assert page.url == f"{proxy.url}/"
    result = await page_fetch(page, "/auth/me")
    assert result["status"] == 401
    assert proxy.zoom.emulator.counters["revoke"] == 1


async def test_the_demo_listening_everywhere_signs_in_from_another_address(
    page: Page, tmp_path: Path
) -> None:
    """``zoom-proxy --demo --host 0.0.0.0``, as in a container, opened at 127.0.0.2:
    the emulator is on the demo's own port, so the browser reaches every page of it."""
    port = unused_port()
    url = f"http://127.0.0.2:{port}"
    everywhere = "0.0.0.0"  # noqa: S104 - the behaviour under test; traffic stays on loopback
    args = ("--demo", "--host", everywhere, "--port", str(port), "--public-url", url)
    async with running(*args, stderr_path=tmp_path / "demo.log") as demo:
        await demo_banner(demo)
        await page.goto(f"{url}/")
        await page.get_by_role("link", name="Sign in with Zoom").click()
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_text("Signed in as Ada Lovelace")).to_be_visible()
        assert page.url == f"{url}/"
        result = await page_fetch(page, "/api/users/me")
    assert result["status"] == 200
    assert result["body"]["email"] == "ada@example.com"


@asynccontextmanager
async def signed_in_to_the_demo(page: Page, tmp_path: Path) -> AsyncIterator[str]:
    """``--demo`` running, and ``page`` signed in through its consent page; its URL."""
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    async with running(
        "--demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--public-url",
        url,
        stderr_path=tmp_path / "demo.log",
    ) as demo:
        await demo_banner(demo)
        await page.goto(f"{url}/")
        await page.get_by_role("link", name="Sign in with Zoom").click()
        await page.get_by_role("button", name="Approve").click()
        yield url


async def test_the_demo_page_lists_a_recording_whose_link_downloads_it(
    page: Page, tmp_path: Path
) -> None:
    async with signed_in_to_the_demo(page, tmp_path):
        link = page.locator("#recordings a")
        await expect(link).to_have_count(1)
        href = await link.get_attribute("href")
        assert href is not None
        assert href.startswith("/download?url=http%3A%2F%2F127.0.0.1")
        async with page.expect_download() as started:
            await link.click()
        download = await started.value
        saved = await download.path()
    assert saved.stat().st_size == DEMO_RECORDING_SIZE


async def test_in_the_demo_removing_the_app_at_zoom_signs_the_browser_out(
    page: Page, tmp_path: Path
) -> None:
    """The newcomer's view of SPEC 14: the emulator's account page removes the app,
    Zoom's signed app_deauthorized reaches the proxy, and the session is over."""
    async with signed_in_to_the_demo(page, tmp_path) as url:
        assert (await page_fetch(page, "/api/users/me"))["status"] == 200
        await page.locator("#zoom-account").click()
        await page.get_by_role("button", name="Remove the app").click()
        await expect(page.get_by_text("HTTP 200")).to_be_visible()
        answer = await page_fetch(page, f"{url}/api/users/me")
        assert answer["status"] == 401
        assert answer["body"]["error"] == "unauthenticated"
        await page.goto(f"{url}/")
        await expect(page.get_by_role("link", name="Sign in with Zoom")).to_be_visible()
