"""The command line, run as a real process: ``python -m proxy`` and its subcommands.

Each test starts ``sys.executable -m proxy`` from the repository root and talks to it
over loopback the way its users do: a shell reading exit codes and stderr, a browser
clicking through the demo, curl with a cookie jar.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet

from proxy.emulator.models import default_user
from tests.helpers.processes import (
    CONFIG_VARIABLES,
    ROOT,
    TIMEOUT,
    child_env,
    demo_banner,
    first_line,
    good_config,
    running,
    write_config,
)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m proxy *args`` to completion."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env=child_env() if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def bad_config(tmp_path: Path, port: int = 8080) -> Path:
    """A config with three problems: a missing key, a typo and a malformed session key."""
    return write_config(
        tmp_path,
        f"""
listen: {{host: 127.0.0.1, port: {port}}}
zoom:
  clinet_typo: test-client-id
  client_secret: test-client-secret
session:
  secret_keys: ["not-a-fernet-key"]
""",
    )


def children_of(pid: int) -> list[str]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return children.read_text().split() if children.exists() else []


def is_listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- HTML forms, read the way a browser reads them --------------------------------------


@dataclass
class Form:
    """A ``<form>``: where it posts, its named inputs, and its buttons by label."""

    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)

    def submission(self, button: str) -> dict[str, str]:
        """The fields a browser posts when ``button`` (its label) is clicked."""
        name, value = self.buttons[button]
        return {**self.inputs, name: value}


class FormParser(HTMLParser):
    """Collects every form in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._button: tuple[str, str] | None = None
        self._label: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(
                action=attr.get("action", ""), method=attr.get("method", "get").lower()
            )
            self.forms.append(self._form)
        elif self._form is not None and tag == "input" and "name" in attr:
            self._form.inputs[attr["name"]] = attr.get("value", "")
        elif self._form is not None and tag == "button":
            self._button, self._label = (attr.get("name", ""), attr.get("value", "")), []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._label.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._form is not None and self._button is not None:
            self._form.buttons["".join(self._label).strip()] = self._button
            self._button = None
        elif tag == "form":
            self._form = None


def forms_in(page: str) -> list[Form]:
    parser = FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


# --- the demo, as a browser sees it ------------------------------------------------------


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    """``python -m proxy --demo`` on a free port; yields the URL it says to open."""
    port = unused_port()
    async with running("--demo", "--port", str(port), stderr_path=tmp_path / "demo.log") as demo:
        banner = await demo_banner(demo)
        url = f"http://localhost:{port}/"
        assert f"Open {url} " in banner, banner
        yield url


async def test_demo_says_what_to_open_and_try_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = unused_port()
    log = tmp_path / "demo.log"
    async with running("--demo", "--port", str(port), stderr_path=log) as demo:
        banner = await demo_banner(demo)
        demo.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.wait(), TIMEOUT) == 0
    url = f"http://localhost:{port}"
    assert f"{url}/api/users/me" in banner
    assert f"curl -b zoom-jar.txt -c zoom-jar.txt {url}/api/users/me" in banner
    assert "Traceback" not in log.read_text()


def test_help_documents_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in (
        "gen-key",
        "check-config",
        "--demo",
        "--workers",
        "--config",
        "--host",
        "--port",
        "--public-url",
        "--version",
    ):
        assert command in result.stdout


def test_check_config_help_names_its_argument_plainly() -> None:
    result = run_cli("check-config", "--help")
    assert result.returncode == 0
    assert "--config PATH" in result.stdout
    assert "CHECK_CONFIG" not in result.stdout


def test_version_prints_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"zoom-proxy {importlib.metadata.version('zoom-proxy')}"


def test_the_zoom_proxy_command_is_installed_with_the_package() -> None:
    command = Path(sys.executable).parent / "zoom-proxy"
    result = subprocess.run(  # noqa: S603 - the package's own console script
        [str(command), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("zoom-proxy ")


MISUSED_FLAGS = {
    "--demo with --config": ("--demo", "--config", "x.yaml"),
    "--demo with --workers": ("--demo", "--workers", "2"),
    "--public-url without --demo": ("--public-url", "http://127.0.0.2:8080"),
    "gen-key with --port": ("--port", "9000", "gen-key"),
    "check-config with --workers": ("--workers", "2", "check-config"),
    "a port out of range": ("--demo", "--port", "70000"),
    "a bad demo public URL": ("--demo", "--public-url", "http://127.0.0.2:8080/path"),
}


@pytest.mark.parametrize("args", MISUSED_FLAGS.values(), ids=MISUSED_FLAGS.keys())
def test_a_flag_that_would_be_ignored_is_refused_with_exit_2(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip(), "says why"
    assert "Traceback" not in result.stderr


async def test_port_and_host_flags_override_the_config(tmp_path: Path) -> None:
    configured, wanted = unused_port(), unused_port()
    config = good_config(tmp_path, configured)
    args = ("--config", str(config), "--host", "127.0.0.1", "--port", str(wanted))
    async with running(*args, stderr_path=tmp_path / "log") as process:
        await first_line(process)
        assert is_listening(wanted)
        assert not is_listening(configured)


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    env = child_env(
        ZOOM_CLIENT_ID="the-id", ZOOM_CLIENT_SECRET="s3cret-value", PROXY_SESSION_KEY=key
    )
    result = run_cli("check-config", "--config", str(ROOT / "config.yaml"), env=env)
    assert result.returncode == 0
    printed = yaml.safe_load(result.stdout)
    assert printed["zoom"]["client_id"] == "the-id"
    assert printed["zoom"]["client_secret"] == "**********"
    assert printed["session"]["secret_keys"] == ["**********"]
    assert printed["zoom"]["redirect_uri"] == "http://localhost:8080/auth/callback"
    assert printed["refresh"]["rotation_grace"] == 60
    assert "s3cret-value" not in result.stdout + result.stderr
    assert key not in result.stdout + result.stderr


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser: keeps cookies (also for IP hosts), follows redirects, prefers HTML."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Accept": BROWSER_ACCEPT},
        timeout=timeout,
    ) as session:
        yield session


async def consent_page(browser: aiohttp.ClientSession, demo: str) -> tuple[str, Form]:
    """Start sign-in at the demo; return the emulator's consent page URL and its form."""
    async with browser.get(urljoin(demo, "/auth/login")) as response:
        assert response.status == 200
        page_url, page = str(response.url), await response.text()
    # The emulator plays Zoom on the demo's own port, so any browser that reaches the
    # demo reaches it too.
    assert page_url.startswith(urljoin(demo, "/_emulator/oauth/authorize?")), page_url
    [form] = [form for form in forms_in(page) if {"Approve", "Deny"} <= form.buttons.keys()]
    assert form.method == "post"
    return page_url, form


async def decide(browser: aiohttp.ClientSession, demo: str, button: str) -> tuple[int, str, str]:
    """Click ``button`` on the consent page; the final status, URL and page."""
    page_url, form = await consent_page(browser, demo)
    async with browser.post(urljoin(page_url, form.action), data=form.submission(button)) as final:
        return final.status, str(final.url), await final.text()


async def test_demo_front_page_offers_sign_in(demo: str, browser: aiohttp.ClientSession) -> None:
    async with browser.get(demo) as response:
        assert response.status == 200
        assert "Sign in with Zoom" in await response.text()


async def test_demo_sign_in_ends_on_the_front_page_with_the_users_name(
    demo: str, browser: aiohttp.ClientSession
) -> None:
    status, url, page = await decide(browser, demo, "Approve")
    user = default_user()
    assert (status, url) == (200, demo)
    assert f"{user.first_name} {user.last_name}" in page
    assert "Sign in with Zoom" not in page


async def test_demo_signed_in_browser_calls_the_api(
    demo: str, browser: aiohttp.ClientSession
) -> None:
    await decide(browser, demo, "Approve")
    async with browser.get(
        urljoin(demo, "/api/users/me"), headers={"Accept": "application/json"}
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert body == default_user().as_json()


async def test_the_demo_listening_on_every_address_works_from_another_host(
    tmp_path: Path, browser: aiohttp.ClientSession
) -> None:
    """As in a container (``--host 0.0.0.0``) reached by another name: here 127.0.0.2,
    so nothing may assume localhost. Sign-in, the emulator and the API all work there."""
    port = unused_port()
    url = f"http://127.0.0.2:{port}/"
    everywhere = "0.0.0.0"  # noqa: S104 - the behaviour under test; traffic stays on loopback
    args = ("--demo", "--host", everywhere, "--port", str(port), "--public-url", url[:-1])
    async with running(*args, stderr_path=tmp_path / "demo.log") as demo:
        assert f"Open {url} " in await demo_banner(demo)
        status, final_url, page = await decide(browser, url, "Approve")
        assert (status, final_url) == (200, url)
        assert default_user().email in page
        async with browser.get(
            urljoin(url, "/api/users/me"), headers={"Accept": "application/json"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["id"] == default_user().id
    assert "Traceback" not in (tmp_path / "demo.log").read_text()


async def test_demo_deny_ends_on_a_cancelled_page(
    demo: str, browser: aiohttp.ClientSession
) -> None:
    _, url, page = await decide(browser, demo, "Deny")
    assert url.startswith(urljoin(demo, "/auth/callback"))
    assert "cancelled" in page.lower()
    async with browser.get(urljoin(demo, "/auth/me"), headers={"Accept": "application/json"}) as me:
        assert me.status == 401


async def test_demo_cookie_jar_works_with_curl(
    demo: str, browser: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await decide(browser, demo, "Approve")
    jar = tmp_path / "zoom-jar.txt"
    async with browser.get(urljoin(demo, "/auth/cookiejar")) as response:
        assert response.status == 200
        jar.write_bytes(await response.read())
    me = await curl_json("-b", str(jar), "-c", str(jar), urljoin(demo, "/api/users/me"))
    assert me["id"] == default_user().id


async def test_the_demos_caller_curl_line_works_when_pasted(tmp_path: Path) -> None:
    port = unused_port()
    async with running("--demo", "--port", str(port), stderr_path=tmp_path / "demo.log") as demo:
        banner = await demo_banner(demo)
        [line] = [text.strip() for text in banner.splitlines() if "Authorization: Bearer" in text]
        program, *arguments = shlex.split(line)
        assert program == "curl"
        me = await curl_json(*arguments)
    assert me["id"] == default_user().id


async def curl_json(*arguments: str) -> Any:
    """What a real curl prints for ``arguments``, as JSON; it must not fail."""
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        *arguments,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(curl.communicate(), TIMEOUT)
    assert curl.returncode == 0, err.decode()
    return json.loads(out)


# --- gen-key and check-config ------------------------------------------------------------


def test_gen_caller_key_prints_a_key_and_its_config_line() -> None:
    result = run_cli("gen-caller-key")
    assert result.returncode == 0
    key, line = result.stdout.splitlines()
    assert re.fullmatch(r"zps_[A-Za-z0-9_-]{43,}", key)
    assert line == f"key_sha256: {hashlib.sha256(key.encode()).hexdigest()}"
    assert run_cli("gen-caller-key").stdout.splitlines()[0] != key


def test_gen_key_prints_one_valid_session_key() -> None:
    result = run_cli("gen-key")
    assert result.returncode == 0
    [key] = result.stdout.splitlines()
    Fernet(key)


def test_gen_key_prints_a_new_key_each_time() -> None:
    assert run_cli("gen-key").stdout != run_cli("gen-key").stdout


def test_check_config_accepts_a_good_config(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(good_config(tmp_path, 8080)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_check_config_accepts_the_shipped_config_with_its_variables_set() -> None:
    env = child_env(
        ZOOM_CLIENT_ID="test-client-id",
        ZOOM_CLIENT_SECRET="test-client-secret",
        PROXY_SESSION_KEY=Fernet.generate_key().decode(),
    )
    result = run_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr


def test_check_config_lists_every_problem_on_its_own_line(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(bad_config(tmp_path)))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert "zoom.client_id: required" in lines
    assert "zoom.clinet_typo: unknown key" in lines
    assert (
        "session.secret_keys[0]: not a valid key; make one with: python -m proxy gen-key" in lines
    )
    assert "Traceback" not in result.stderr


def test_check_config_names_the_unset_variables_of_the_shipped_config() -> None:
    result = run_cli("check-config")
    assert result.returncode == 2
    for name in CONFIG_VARIABLES:
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_config_path_comes_from_zoom_proxy_config(tmp_path: Path) -> None:
    good = run_cli("check-config", env=child_env(ZOOM_PROXY_CONFIG=str(good_config(tmp_path, 1))))
    bad = run_cli("check-config", env=child_env(ZOOM_PROXY_CONFIG=str(bad_config(tmp_path))))
    assert good.returncode == 0, good.stderr
    assert bad.returncode == 2
    assert "zoom.clinet_typo: unknown key" in bad.stderr.splitlines()


# --- the server ----------------------------------------------------------------------------


def test_server_never_starts_on_a_bad_config(tmp_path: Path) -> None:
    port = unused_port()
    result = run_cli("--config", str(bad_config(tmp_path, port)))
    assert result.returncode == 2
    assert "zoom.client_id: required" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not is_listening(port)


async def test_server_answers_healthz_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = unused_port()
    config = good_config(tmp_path, port)
    log = tmp_path / "proxy.log"
    async with running("--config", str(config), stderr_path=log) as server:
        assert f"http://127.0.0.1:{port}" in await first_line(server)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as client,
            client.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
        server.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(server.wait(), TIMEOUT)
    assert returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_busy_port_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--config", str(good_config(tmp_path, port)))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_workers_share_the_port_and_all_stop_on_sigterm(tmp_path: Path) -> None:
    port = unused_port()
    log = tmp_path / "proxy.log"
    async with running(
        "--config", str(good_config(tmp_path, port)), "--workers", "2", stderr_path=log
    ) as server:
        assert f"http://127.0.0.1:{port}" in await first_line(server)
        assert f"http://127.0.0.1:{port}" in await first_line(server)
        children = children_of(server.pid)
        assert len(children) == 2
        async with aiohttp.ClientSession() as client:
            for _ in range(4):
                async with client.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), TIMEOUT) == 0
    assert children_of(server.pid) == []
