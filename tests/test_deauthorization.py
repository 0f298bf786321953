"""``app_deauthorized`` (SPEC 14): every session of a user who removed the app ends,
on every replica and on either transport, and is never forwarded or refreshed again."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from proxy.redis.client import connect
from tests.helpers.proxies import (
    Proxy,
    ProxyFactory,
    get_me,
    replicas,
    sign_in_with_expiring_token,
)
from tests.helpers.raw_http import connection, read_answers, request
from tests.helpers.webhooks import SECRET, event_body, post_event

pytestmark = pytest.mark.both_transports

WEBHOOKS = {"secret_token": SECRET}


def deauthorized(user_id: str, when: float | None = None) -> bytes:
    at = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    return event_body(
        "app_deauthorized",
        account_id="acct-1",
        user_id=user_id,
        signature="sig",
        deauthorization_time=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        client_id="client",
    )


async def deauthorize(proxy: Proxy, user_id: str) -> None:
    status, _ = await post_event(proxy, deauthorized(user_id))
    assert status == 200


def api_calls(proxy: Proxy) -> int:
    return len(proxy.zoom.emulator.api_requests)


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> Proxy:
    proxy = await make_proxy(webhooks=WEBHOOKS)
    await proxy.sign_in()
    return proxy


async def test_a_deauthorized_users_cookie_is_signed_out_and_never_forwarded(
    proxy: Proxy,
) -> None:
    cookie = proxy.cookie_header()
    assert (await get_me(proxy, cookie)).status == 200
    await deauthorize(proxy, proxy.zoom.emulator.user.id)
    before = api_calls(proxy)
    response = await get_me(proxy, cookie)
    assert response.status == 401
    cleared = response.cookies["zoom_proxy"]
    assert (cleared.value, cleared["max-age"]) == ("", "0")
    assert api_calls(proxy) == before


async def test_the_lane_forwards_no_revoked_cookie_pipelined_after_a_good_one(
    proxy: Proxy, make_proxy: ProxyFactory
) -> None:
    """On one connection, a live session's request, then a revoked one's: each is
    judged by its own cookie (the lane reads the session of every request it takes)."""
    revoked = proxy.cookie_header()
    await deauthorize(proxy, proxy.zoom.emulator.user.id)
    await proxy.sign_in()  # the same user again: a new session
    live = proxy.cookie_header()
    before = api_calls(proxy)
    async with connection(proxy) as (reader, writer):
        for cookie in (live, revoked, live):
            writer.write(request("GET", "/api/users/me", cookie))
        answers = await read_answers(reader, 3)
    assert [answer.status for answer in answers] == [200, 401, 200]
    assert api_calls(proxy) == before + 2


async def test_a_revoked_session_is_not_refreshed(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(webhooks=WEBHOOKS)
    cookie = await sign_in_with_expiring_token(proxy)
    await deauthorize(proxy, proxy.zoom.emulator.user.id)
    assert (await get_me(proxy, cookie)).status == 401
    assert proxy.zoom.emulator.counters["refresh_ok"] == 0


async def test_signing_in_again_after_deauthorizing_gives_a_session_that_works(
    proxy: Proxy,
) -> None:
    await deauthorize(proxy, proxy.zoom.emulator.user.id)
    assert (await get_me(proxy, proxy.cookie_header())).status == 401
    await proxy.sign_in()
    assert (await get_me(proxy, proxy.cookie_header())).status == 200


async def test_another_users_sessions_are_untouched(proxy: Proxy) -> None:
    await deauthorize(proxy, "some-other-user")
    assert (await get_me(proxy, proxy.cookie_header())).status == 200


async def test_the_home_page_of_a_revoked_session_is_the_signed_out_one(proxy: Proxy) -> None:
    await deauthorize(proxy, proxy.zoom.emulator.user.id)
    async with proxy.client.get(f"{proxy.url}/") as response:
        assert response.status == 200
        assert "Sign in with Zoom" in await response.text()
    assert proxy.session_cookies() == {}  # cleared


async def test_a_deauthorization_time_from_zooms_clock_ahead_spares_a_later_sign_in(
    proxy: Proxy,
) -> None:
    """A session begun after the event arrived is a new authorization, whatever
    Zoom's clock said (the revocation is never later than its arrival)."""
    status, _ = await post_event(proxy, deauthorized(proxy.zoom.emulator.user.id, time.time() + 60))
    assert status == 200
    await proxy.sign_in()
    assert (await get_me(proxy, proxy.cookie_header())).status == 200


# === across replicas, through Redis ====================================================


async def until_signed_out(proxy: Proxy, cookie: str, within: float) -> float:
    """Seconds until ``proxy`` answers 401 to ``cookie``, asked again and again; fails
    the test past ``within``."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while (await get_me(proxy, cookie)).status != 401:
            pass
    return time.monotonic() - started


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_other_replicas_sign_the_user_out_within_two_seconds(
    make_proxy: ProxyFactory, redis_section: dict[str, str], store: str
) -> None:
    a, b = await replicas(make_proxy, redis_section, store=store, webhooks=WEBHOOKS)
    await a.sign_in()
    cookie = a.cookie_header()
    assert (await get_me(b, cookie)).status == 200
    await deauthorize(a, a.zoom.emulator.user.id)
    await until_signed_out(b, cookie, within=2.0)


async def test_a_replica_started_later_learns_the_revocation(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    a, _ = await replicas(make_proxy, redis_section, webhooks=WEBHOOKS)
    await a.sign_in()
    cookie = a.cookie_header()
    await deauthorize(a, a.zoom.emulator.user.id)
    [later, _] = await replicas(make_proxy, redis_section, webhooks=WEBHOOKS)
    assert (await get_me(later, cookie)).status == 401


async def test_with_redis_sessions_the_users_sessions_are_deleted(
    make_proxy: ProxyFactory, redis_section: dict[str, str]
) -> None:
    proxy = await make_proxy(session={"store": "redis"}, redis=redis_section, webhooks=WEBHOOKS)
    await proxy.sign_in()
    await proxy.sign_in(proxy.new_client())
    client = connect(redis_section["url"])
    try:
        pattern = f"{redis_section['key_prefix']}session:*"
        assert len(await client.keys(pattern)) == 2
        await deauthorize(proxy, proxy.zoom.emulator.user.id)
        assert await client.keys(pattern) == []
        assert await client.keys(f"{redis_section['key_prefix']}user-sessions:*") == []
    finally:
        await client.aclose()


# === with the emulator as Zoom ===========================================================


@pytest.fixture
def zoom_sends_events(proxy: Proxy) -> Proxy:
    emulator = proxy.zoom.emulator
    emulator.webhook_url, emulator.webhook_secret = f"{proxy.url}/webhooks/zoom", SECRET
    return proxy


async def test_removing_the_app_at_zoom_ends_the_session_through_its_event(
    zoom_sends_events: Proxy,
) -> None:
    proxy = zoom_sends_events
    emulator = proxy.zoom.emulator
    cookie = proxy.cookie_header()
    assert await emulator.deauthorize(emulator.user.id) == 200
    assert emulator.sent_events == [("app_deauthorized", 200)]
    assert (await get_me(proxy, cookie)).status == 401


async def test_zoom_validates_the_proxys_endpoint(zoom_sends_events: Proxy) -> None:
    assert await zoom_sends_events.zoom.emulator.validate_endpoint()


async def test_without_a_usable_deauthorization_time_the_arrival_counts(proxy: Proxy) -> None:
    cookie = proxy.cookie_header()
    body = event_body("app_deauthorized", user_id=proxy.zoom.emulator.user.id)
    assert (await post_event(proxy, body))[0] == 200
    assert (await get_me(proxy, cookie)).status == 401
    await proxy.sign_in()
    assert (await get_me(proxy, proxy.cookie_header())).status == 200


async def test_an_app_deauthorized_without_a_user_id_is_400(proxy: Proxy) -> None:
    status, _ = await post_event(proxy, event_body("app_deauthorized", account_id="acct-1"))
    assert status == 400
    assert (await get_me(proxy, proxy.cookie_header())).status == 200
