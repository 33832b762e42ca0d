"""Faults for real: kill -9, restart, SIGSTOP; every wait bounded, every process cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from streamer.core.frames import FrameResult

WAIT_LIMIT_S = 45.0
POLL_S = 0.05


@dataclass
class Arrivals:
    """When each camera's results arrived (monotonic), as a pipeline observer."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def observe(self, result: FrameResult) -> None:
        self.times[result.camera].append(time.monotonic())

    def count(self, camera: str, after: float = 0.0) -> int:
        return sum(t > after for t in self.times[camera])

    async def wait_for(self, camera: str, count: int, after: float = 0.0) -> float:
        """Wait until `count` results of `camera` arrived after `after`; the time of the first."""
        deadline = time.monotonic() + WAIT_LIMIT_S
        while self.count(camera, after) < count:
            assert time.monotonic() < deadline, f"{camera}: {count} frames not seen in {WAIT_LIMIT_S}s"
            await asyncio.sleep(POLL_S)
        return min(t for t in self.times[camera] if t > after)

    def longest_gap(self, camera: str, start: float, end: float) -> float:
        """The longest time without a result of `camera` between `start` and `end`."""
        inside = [start, *(t for t in self.times[camera] if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(inside))


async def wait_until(condition: object, what: str, limit_s: float = WAIT_LIMIT_S) -> float:
    """Poll `condition()` until true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < limit_s, f"timed out after {limit_s}s waiting for {what}"
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


def backend_stubs(server_pid: int) -> list[int]:
    """The Python-backend stub processes of the embedded server `server_pid` (its process group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        group = int(stat.rpartition(")")[2].split()[2])  # after the command name: state ppid pgrp
        if group == server_pid and b"triton_python_backend_stub" in command:
            found.append(int(entry.name))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
