"""CPU time and memory of a process tree, read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User plus system CPU time of the live tree under ``root``, all threads included."""
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state(0) ppid(1) ... utime(11) stime(12).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(root: int) -> float:
    """Resident memory of the tree under ``root``, in MiB."""
    return sum(_status_kib(pid, "VmRSS") for pid in tree(root)) / 1024


def peak_rss_mib(root: int) -> float:
    """The largest VmHWM (peak resident memory) of any process in the tree, in MiB."""
    return max((_status_kib(pid, "VmHWM") for pid in tree(root)), default=0) / 1024


def reset_peak_rss(root: int) -> bool:
    """Reset VmHWM of every process in the tree (``echo 5 > clear_refs``); False if refused."""
    done = True
    for pid in tree(root):
        try:
            (PROC / str(pid) / "clear_refs").write_text("5")
        except OSError:
            done = False
    return done


@dataclass
class RssSampler:
    """Samples the tree's RSS every ``interval`` seconds while running as a task."""

    root: int
    interval: float = 1.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)

    async def run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, rss_mib(self.root)))
            await asyncio.sleep(self.interval)

    def values(self) -> list[float]:
        return [mib for _, mib in self.samples]

    def mean_between(self, start: float, end: float) -> float:
        chosen = [mib for at, mib in self.samples if start <= at < end]
        return statistics.fmean(chosen) if chosen else float("nan")

    def window_means(self, window: float) -> tuple[float, float]:
        """The mean RSS over the first and over the last ``window`` seconds."""
        if not self.samples:
            return float("nan"), float("nan")
        last = self.samples[-1][0]
        return self.mean_between(0, window), self.mean_between(last - window, last + 1e-9)


@contextlib.asynccontextmanager
async def sampling(root: int, interval: float = 1.0) -> AsyncIterator[RssSampler]:
    """``async with sampling(pid) as sampler:`` samples RSS for the block's duration."""
    sampler = RssSampler(root, interval)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full.

    System-wide (TcpExt ListenOverflows in /proc/net/netstat); -1 if unreadable.
    """
    try:
        lines = (PROC / "net" / "netstat").read_text().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(row.get("ListenOverflows", -1))
    return -1


def system_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores; steal included), from /proc/stat."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's CPU time plus that of its finished children (wrk, curl)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class ForeignLoad:
    """CPU time spent during a measurement by anything but us: other users, the hypervisor.

    ``ours`` are the roots of the process trees we started; wrk and curl count once
    they have finished, through RUSAGE_CHILDREN.
    """

    ours: list[int]
    _start: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float, float]:
        trees = sum(cpu_seconds(pid) for pid in self.ours)
        return time.monotonic(), system_busy_seconds(), own_cpu_seconds(), trees

    def start(self) -> None:
        self._start = self._now()

    def share(self) -> float:
        """Foreign CPU time since `start`, as a share of all cores' wall time."""
        now = self._now()
        elapsed, busy, own, trees = (b - a for a, b in zip(self._start, now, strict=True))
        foreign = busy - own - trees
        return max(0.0, foreign) / (elapsed * (os.cpu_count() or 1)) if elapsed > 0 else 0.0
