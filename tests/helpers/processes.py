"""A real ``python -m proxy`` child process, run from the repository root the way its
users run it: its environment, a config file for it, starting it in the background and
reading what it prints once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
#: Generous, because CI machines are slow; nothing waits this long when things work.
TIMEOUT = 30.0
#: The variables the shipped config.yaml reads; removed from every child's environment.
CONFIG_VARIABLES = ("ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET", "PROXY_SESSION_KEY")


def child_env(**extra: str) -> dict[str, str]:
    """This environment minus anything that configures the proxy, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in CONFIG_VARIABLES and name != "ZOOM_PROXY_CONFIG"
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def good_config(tmp_path: Path, port: int) -> Path:
    """A valid config listening on ``port``, with a fresh session key."""
    return write_config(
        tmp_path,
        f"""
listen: {{host: 127.0.0.1, port: {port}}}
public_url: http://127.0.0.1:{port}
zoom: {{client_id: test-client-id, client_secret: test-client-secret}}
session: {{secret_keys: ["{Fernet.generate_key().decode()}"]}}
""",
    )


@asynccontextmanager
async def running(
    *args: str, stderr_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m proxy *args`` running in the background; killed on the way out.

    Its stderr (the logs) goes to ``stderr_path``, so it can never fill a pipe. It runs
    in a process group of its own, and the whole group is killed: a forked worker left
    behind would hold stdout open and make ``wait()`` hang.
    """
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            *args,
            cwd=ROOT,
            env=child_env() if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def first_line(process: asyncio.subprocess.Process) -> str:
    """The first line the process prints: it prints it once it is listening."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    return line.decode()


async def demo_banner(process: asyncio.subprocess.Process) -> str:
    """What ``--demo`` prints once it listens, up to its last line."""
    lines = [await first_line(process)]
    while "Ctrl-C" not in lines[-1]:
        lines.append(await first_line(process))
    return "".join(lines)
