"""Child processes: started in their own process group, pinned on request, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def run_stoppably(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, where SIGINT, SIGTERM and SIGHUP cancel ``main``.

    Cancelling lets every ``finally`` run, so the children (in sessions of their own,
    out of reach of the terminal's signals) are stopped and the temp dir removed.
    """

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, task.cancel)
        return await main

    return asyncio.run(guarded())


def tool(name: str, *fallbacks: str) -> str:
    """The absolute path of a program, or a clear error naming the Debian package."""
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    raise SystemExit(f"bench: `{name}` not found; install it (apt-get install {name})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def raise_file_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def pinned(command: Sequence[str], cores: str | None) -> list[str]:
    """``command`` under ``taskset -c cores`` (taskset execs it: the pid stays the same)."""
    if cores is None:
        return list(command)
    return [tool("taskset"), "-c", cores, *command]


@dataclass
class Child:
    """A long-running child: a server under test or part of the set-up."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


@dataclass
class Supervisor:
    """Starts children in new sessions and stops every one of them, process group and all."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    async def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        cores: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *pinned(command, cores),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    async def stop(self, child: Child, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, then SIGKILL what is left after ``grace`` s."""
        if child in self.children:
            self.children.remove(child)
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.process.wait()
        # Workers of a multi-process server may outlive their parent for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)

    async def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            await self.stop(child)


async def wait_for_port(child: Child, port: int, patience: float = 15.0) -> None:
    """Return once ``127.0.0.1:port`` accepts connections; fail if the child exits first."""
    deadline = time.monotonic() + patience
    while True:
        if child.process.returncode is not None:
            raise RuntimeError(
                f"{child.name} exited with status {child.process.returncode}:\n{child.log_tail()}"
            )
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{child.name} did not listen on port {port}:\n{child.log_tail()}"
                ) from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def run_tool(
    command: Sequence[str],
    *,
    cores: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a short-lived tool to completion; its stdout, or an error with its stderr."""
    process = await asyncio.create_subprocess_exec(
        *pinned(command, cores),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({process.returncode}): {stderr.decode(errors='replace')}"
        )
    return stdout.decode(errors="replace")


@contextlib.asynccontextmanager
async def supervised(
    prefix: str, say: Callable[[str], None], *, keep_temp: bool = False
) -> AsyncIterator[tuple[Supervisor, Path]]:
    """A temp dir and a supervisor for it. On the way out every child is stopped and the
    dir removed (unless ``keep_temp``); on a failure each child's log tail is shown."""
    temp = Path(tempfile.mkdtemp(prefix=prefix))
    supervisor = Supervisor(temp)
    try:
        yield supervisor, temp
    except Exception:
        for child in supervisor.children:
            tail = child.log_tail()
            if tail:
                say(f"--- {child.name} log ---\n{tail}")
        raise
    finally:
        await supervisor.stop_all()
        if keep_temp:
            say(f"temp dir kept: {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
