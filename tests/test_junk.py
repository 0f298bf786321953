"""Junk sent to the real process: each request gets a 4xx, and nothing the process
writes is a traceback or an ERROR line, in either log format.

A port scanner or a confused client must not flood the error log, nor lose the log
line of the request it sent. Each piece of junk goes first on a new connection (where
the front reads it) and after a request aiohttp answered (where aiohttp's own parser
reads it). The two are sent apart: aiohttp's parser drops a request it read in the same
piece as junk after it (``test_framing.py::aiohttp_loses_the_lead``).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from tests.helpers.processes import TIMEOUT, good_config, running
from tests.helpers.raw_http import read_answers

JUNK = {
    "garbage request line": b"\x00\x01\x02 garbage \xff\r\n\r\n",
    "a request line of one word": b"GET\r\n\r\n",
    "a request line of two words": b"HELLO WORLD\r\n\r\n",
    "a 17 KB URL": b"GET /api/users/me?q=" + b"x" * (17 * 1024) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "a 33 KB header": b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * (33 * 1024) + b"\r\n\r\n",
    "bad percent-encoding": (
        b"GET /api/users/%zz%G0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "conflicting Content-Length": (
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "a TLS ClientHello": bytes.fromhex("160301020001000100fc0303") + b"\x00" * 64,
    "an absolute-form target": (
        b"GET http://evil.example/api/users/me HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "an upgrade": b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
}

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"


async def _statuses(port: int, *writes: bytes) -> list[int]:
    """The status of each answer on one connection, until the proxy closes it: each write
    but the last is sent once the previous one's answer is in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        statuses = []
        for raw in writes[:-1]:
            writer.write(raw)
            statuses += [answer.status for answer in await read_answers(reader, 1)]
        writer.write(writes[-1])
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    lines = data.split(b"\r\n")
    return statuses + [int(line.split(b" ")[1]) for line in lines if line.startswith(b"HTTP/1.")]


async def _listening(port: int) -> None:
    """Until the process accepts connections (in JSON, it announces that in its log)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)  # not listening yet: nothing else tells us when
            else:
                writer.close()
                return


def _errors(text: str, log_format: str) -> list[str]:
    """The lines of ``text`` that are an ERROR (or worse), or part of a traceback."""
    bad = []
    for line in text.splitlines():
        if "Traceback" in line:
            bad.append(line)
        elif log_format == "json" and line.startswith("{"):
            if json.loads(line)["level"] in ("error", "critical"):
                bad.append(line)
        elif log_format == "text" and (" ERROR " in line or " CRITICAL " in line):
            bad.append(line)
    return bad


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_junk_gets_a_4xx_each_and_no_error_is_logged(tmp_path: Path, log_format: str) -> None:
    port = unused_port()
    config = good_config(tmp_path, port)
    with config.open("a") as text:
        text.write(f"logging: {{format: {log_format}}}\n")
    stderr = tmp_path / "stderr.log"
    async with running("--config", str(config), stderr_path=stderr) as process:
        await _listening(port)
        for name, raw in JUNK.items():
            first = await _statuses(port, raw)
            assert len(first) == 1, name
            assert 400 <= first[0] < 500, name
            behind = await _statuses(port, HEALTH, raw)
            assert behind[0] == 200, name
            assert len(behind) == 2, name
            assert 400 <= behind[1] < 500, name
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        stdout = (await asyncio.wait_for(process.stdout.read(), TIMEOUT)).decode()
        await asyncio.wait_for(process.wait(), TIMEOUT)
    logged = stderr.read_text(encoding="utf-8", errors="replace")
    assert _errors(stdout + logged, log_format) == []
    # Each refused request is still logged, at warning level.
    assert logged.count("refused a request") >= len(JUNK)
