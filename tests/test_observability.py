"""Metrics, request ids, access records and forwarded-header handling."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import unused_port

from proxy.observe.logs import accepted_request_id
from tests.helpers.metrics import scrape, value
from tests.helpers.processes import TIMEOUT, running
from tests.helpers.proxies import (
    Proxy,
    ProxyFactory,
    Zoom,
    fetch_with_cookie,
    proxy_config,
)

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


async def test_requests_are_counted_by_route_class_method_and_status_class(
    signed_in: Proxy,
) -> None:
    for _ in range(3):
        async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
            assert response.status == 200
    async with signed_in.client.get(f"{signed_in.url}/nope") as response:
        assert response.status == 404
    metrics = await scrape(signed_in)
    assert value(metrics, "zoom_proxy_requests_total", route="api", method="GET", status="2xx") == 3
    assert (
        value(metrics, "zoom_proxy_requests_total", route="other", method="GET", status="4xx") == 1
    )


async def test_upstream_latency_is_observed_per_forwarded_request(signed_in: Proxy) -> None:
    for _ in range(2):
        async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
            assert response.status == 200
    metrics = await scrape(signed_in)
    assert value(metrics, "zoom_proxy_upstream_latency_seconds_count") == 2


async def test_the_in_flight_gauge_counts_the_scrape_itself(proxy: Proxy) -> None:
    assert value(await scrape(proxy), "zoom_proxy_in_flight_requests") == 1


async def test_refreshes_are_counted_by_outcome(signed_in: Proxy) -> None:
    superseded = signed_in.cookie_header()
    signed_in.zoom.emulator.expire_access_tokens()
    url = f"{signed_in.url}/api/users/me"
    assert (await fetch_with_cookie(url, superseded))[0].status == 200
    assert (await fetch_with_cookie(url, superseded))[0].status == 200
    signed_in.zoom.emulator.revoke_all()
    signed_in.zoom.emulator.expire_access_tokens()
    async with signed_in.client.get(url) as response:
        assert response.status == 401
    metrics = await scrape(signed_in)
    assert value(metrics, "zoom_proxy_refreshes_total", outcome="ok") == 1
    assert value(metrics, "zoom_proxy_refreshes_total", outcome="rotated_grace_hit") >= 1
    assert value(metrics, "zoom_proxy_refreshes_total", outcome="invalid_grant") == 1


async def test_sign_ins_are_counted_by_outcome(proxy: Proxy) -> None:
    await proxy.sign_in()
    async with proxy.client.get(
        f"{proxy.url}/auth/callback", params={"code": "x", "state": "forged"}
    ) as response:
        assert response.status == 400
    metrics = await scrape(proxy)
    assert value(metrics, "zoom_proxy_sign_ins_total", outcome="ok") == 1
    assert value(metrics, "zoom_proxy_sign_ins_total", outcome="invalid_state") == 1


async def test_undecryptable_session_cookies_are_counted(proxy: Proxy) -> None:
    response, _ = await fetch_with_cookie(f"{proxy.url}/api/users/me", "zoom_proxy=garbage")
    assert response.status == 401
    assert value(await scrape(proxy), "zoom_proxy_session_decode_failures_total") == 1


async def test_metrics_can_be_turned_off(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(metrics={"enabled": False})
    async with proxy.client.get(f"{proxy.url}/metrics") as response:
        assert response.status == 404


async def test_a_sane_request_id_is_kept_and_returned(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/healthz", headers={"X-Request-ID": "abc-123"}) as r:
        assert r.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "tab\there", "ünïcode"])
async def test_an_insane_request_id_is_replaced(proxy: Proxy, bad: str) -> None:
    async with proxy.client.get(
        f"{proxy.url}/healthz", headers={"X-Request-ID": bad.encode().decode("latin-1")}
    ) as response:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


async def test_every_answer_carries_a_request_id(signed_in: Proxy) -> None:
    targets = ["/api/users/me", "/api/_test/download?bytes=200000", "/nope", "/auth/me"]
    ids = set()
    for target in targets:
        async with signed_in.client.get(f"{signed_in.url}{target}") as response:
            ids.add(response.headers["X-Request-ID"])
    async with aiohttp.ClientSession() as client, client.get(f"{signed_in.url}/auth/me") as r:
        assert r.status == 401
        ids.add(r.headers["X-Request-ID"])
    assert len(ids) == len(targets) + 1


async def test_trusted_forwarded_for_is_the_logged_client_address(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    trusting = await make_proxy(trust_forwarded_headers=True)
    untrusting = await make_proxy()
    for proxy in (trusting, untrusting):
        async with proxy.client.get(
            f"{proxy.url}/healthz", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        ) as response:
            assert response.status == 200
    remotes = [r.access["remote"] for r in caplog.records if hasattr(r, "access")]
    assert remotes == ["203.0.113.9", "127.0.0.1"]


async def test_trusted_forwarded_proto_https_makes_cookies_secure(make_proxy: ProxyFactory) -> None:
    trusting = await make_proxy(trust_forwarded_headers=True)
    untrusting = await make_proxy()
    secure = []
    for proxy in (trusting, untrusting):
        async with proxy.client.get(
            f"{proxy.url}/auth/login", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False
        ) as response:
            secure.append(response.cookies["zoom_proxy_login"]["secure"])
    assert secure == [True, ""]


async def test_json_logs_are_json_from_start_up_and_carry_the_request_id(
    zoom: Zoom, tmp_path: Path
) -> None:
    port = unused_port()
    config = proxy_config(zoom.base_url, port, logging={"format": "json", "level": "info"})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = tmp_path / "proxy.log"
    async with running("--config", str(config_path), stderr_path=log) as server:
        async with aiohttp.ClientSession() as client:
            await until_listening(client, f"http://127.0.0.1:{port}/healthz")
            async with client.get(
                f"http://127.0.0.1:{port}/api/users/me?token=hidden",
                headers={"X-Request-ID": "req-42"},
            ) as response:
                assert response.status == 401
        server.terminate()
        assert await server.wait() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any("listening" in line["message"] for line in lines)
    mine = [line for line in lines if line["request_id"] == "req-42"]
    access = [line for line in mine if line["logger"] == "aiohttp.access"]
    assert len(mine) >= 2
    assert access[0]["path"] == "/api/users/me?token"
    assert (access[0]["method"], access[0]["status"], access[0]["user_id"]) == ("GET", 401, "-")
    assert isinstance(access[0]["duration_ms"], float)


async def until_listening(client: aiohttp.ClientSession, url: str) -> None:
    """JSON mode prints nothing on stdout: ask until the port answers."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                async with client.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


def test_new_request_ids_stay_distinct_across_draws_of_randomness() -> None:
    # 4 KiB of randomness makes 256 ids: 1,000 cross several draws.
    ids = [accepted_request_id(None) for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_a_forked_worker_never_hands_out_its_parents_request_ids() -> None:
    accepted_request_id(None)  # the parent has drawn ids it has not handed out yet
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its ids go back to the parent, and it leaves at once
        os.write(writing, "".join(accepted_request_id(None) for _ in range(8)).encode())
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        childs = pipe.read()
    os.waitpid(child, 0)
    parents = "".join(accepted_request_id(None) for _ in range(8))
    assert len(childs) == len(parents) == 8 * 32
    assert childs != parents
