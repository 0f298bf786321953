"""A real ``redis-server`` (Debian's package) on a free loopback port, for the tests.

No fake Redis: what the proxy relies on (``SET NX PX``, scripts, expiry, a server
that dies and comes back) is what a fake gets subtly wrong.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from aiohttp.test_utils import unused_port

#: Where Debian's ``redis-server`` package installs it; ``.ci/run`` installs it.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: Generous, because CI machines are slow; nothing waits this long when things work.
STARTUP_TIMEOUT = 20.0


def available() -> bool:
    return Path(REDIS_SERVER).exists()


class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` keep its port.

    With ``directory``, every write is appended to a file there and survives a kill,
    as on a production server; without, nothing is persisted.
    """

    def __init__(self, *, password: str | None = None, directory: Path | None = None) -> None:
        self.port = unused_port()
        self.password = password
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.directory is None:
            command += ["--appendonly", "no"]
        else:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
            command += ["--dir", str(self.directory)]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(  # noqa: S603 - Debian's redis-server
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self._process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it outright (SIGKILL), as a crash or an OOM kill would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open but nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
