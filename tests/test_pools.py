"""Keep-alive pools to origins known only at run time (``proxy.http.pools``)."""

from __future__ import annotations

import pytest
from aiohttp import web
from yarl import URL

from proxy import serve
from proxy.http import pools
from proxy.http.pools import Pools


def new_pools() -> Pools:
    return Pools(connect_timeout=5, read_timeout=5, buffer_limit=1 << 16)


def test_one_pool_serves_an_origin_whatever_the_path_port_spelling_or_userinfo() -> None:
    hosts = new_pools()
    first = hosts.for_url(URL("https://zoom.us/rec/a"))
    assert hosts.for_url(URL("https://zoom.us:443/rec/b?x=1")) is first
    assert hosts.for_url(URL("https://someone@ZOOM.us/rec/c", encoded=True)) is first
    assert hosts.for_url(URL("http://zoom.us/rec/a")) is not first
    assert len(hosts) == 2


def test_beyond_the_cap_the_least_recently_used_pool_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pools, "MAX_ORIGINS", 2)
    hosts = new_pools()
    first = hosts.for_url(URL("http://127.0.0.1:1/"))
    second = hosts.for_url(URL("http://127.0.0.2:1/"))
    hosts.for_url(URL("http://127.0.0.1:1/again"))  # the first is now the more recent
    third = hosts.for_url(URL("http://127.0.0.3:1/"))
    assert (first.closed, second.closed, third.closed) == (False, True, False)
    assert len(hosts) == 2
    assert hosts.for_url(URL("http://127.0.0.2:1/")) is not second  # made anew


async def test_a_pool_with_a_connection_lent_out_is_not_closed_to_make_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing it would cut a download off; the cap waits."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (1 << 20))

    app = web.Application()
    app.router.add_get("/", hello)
    runner = await serve.start(app, host="127.0.0.1", port=0, lane=False)
    port = runner.addresses[0][1]
    monkeypatch.setattr(pools, "MAX_ORIGINS", 1)
    hosts = new_pools()
    try:
        busy = hosts.for_url(URL(f"http://127.0.0.1:{port}/"))
        response = await busy.request("GET", "/", [], None)
        other = hosts.for_url(URL(f"http://127.0.0.2:{port}/"))
        assert not busy.closed
        assert len(hosts) == 2
        assert len(await response.read()) == 1 << 20
        response.release()
        hosts.for_url(URL(f"http://127.0.0.3:{port}/"))  # now the busy one is idle: closed
        assert busy.closed
        assert not other.closed
    finally:
        hosts.close()
        await runner.cleanup()
