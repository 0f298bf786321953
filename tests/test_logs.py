"""No log line ever holds a token, an authorization code, a cookie value or the secret."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from proxy.config import LoggingSettings
from proxy.observe.logs import JsonFormatter, configure_logging, redacted_target
from tests.helpers.proxies import Proxy
from tests.helpers.raw_http import raw_request


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter()
    return "\n".join(
        record.getMessage()
        + (formatter.formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )


async def test_no_secret_reaches_any_log_line(
    proxy: Proxy, all_logs: pytest.LogCaptureFixture
) -> None:
    client, url = proxy.client, proxy.url
    async with client.get(f"{url}/auth/login", allow_redirects=False) as login:
        authorize = login.headers["Location"]
    async with client.get(authorize, allow_redirects=False) as zoom:
        callback = zoom.headers["Location"]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    async with client.get(callback) as response:
        assert response.status == 200
    async with client.get(callback) as replayed:
        assert replayed.status == 400
    cookies = list(proxy.session_cookies().values())
    proxy.zoom.emulator.expire_access_tokens()
    async with client.get(f"{url}/api/users/me?token=q-secret") as response:
        assert response.status == 200
    cookies += list(proxy.session_cookies().values())
    await raw_request(url, f"GET / HTTP/1.1\r\nCookie: zoom_proxy={'k' * 40000}\r\n\r\n".encode())
    async with client.post(f"{url}/auth/logout") as response:
        assert response.status == 204

    logged = everything_logged(all_logs)
    secrets = [
        code,
        "q-secret",
        "emulator-client-secret",
        *proxy.zoom.emulator.issued_tokens(),
        *(value[:40] for value in cookies),
        "k" * 40,
    ]
    assert "/auth/callback?code&state" in logged
    assert [s for s in secrets if s in logged] == []


def test_access_paths_keep_query_keys_but_never_values() -> None:
    assert redacted_target("/auth/callback?code=abc&state=def") == "/auth/callback?code&state"
    assert redacted_target("/api/users") == "/api/users"


def test_a_request_cannot_forge_a_log_line() -> None:
    forged = redacted_target("/nope%0A2026-01-01%20INFO%20FORGED?a%0Ab=1")
    assert "\n" not in forged
    assert forged.startswith("/nope%0A2026")


def test_json_logs_are_one_object_a_line() -> None:
    record = logging.LogRecord("proxy", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    record.access = {"status": 200}
    line = JsonFormatter().format(record)
    assert json.loads(line) | {"time": "t"} == {
        "time": "t",
        "level": "info",
        "logger": "proxy",
        "message": "hello there",
        "request_id": "-",
        "status": 200,
    }


def test_the_log_level_is_configurable() -> None:
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        configure_logging(LoggingSettings(level="warning", format="json"))
        assert root.level == logging.WARNING
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
