"""The dashboard server against clients that open connections and say nothing, over real sockets.

Previously 1,100 half-open connections at the usual limit of 1,024 open files broke /healthz (a
liveness probe would have restarted the service), lost event pictures and broker reconnects.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from streamer.app import Service
from streamer.config import StreamerConfig
from streamer.core.stats import StatsRegistry
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.service import MetricsService
from tests.control.support import jsonl_messages, started
from tests.metrics.conftest import streamer_config

CAP = 64
HOSTILE = 600  # connections the attacker holds open, far beyond the cap and the lowered limit
FLOOD_S = 8.0
# Opens `count` connections to 127.0.0.1:port, every other one with half a request head, holds
# them until killed; says how many connected. A connect the server never takes times out.
ATTACKER = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held, deadline = [], time.monotonic() + 15
for i in range(count):
    if time.monotonic() > deadline:
        break
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n")
        held.append(s)
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(3600)
"""


@contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """Run with a lower soft RLIMIT_NOFILE (as a service started under `ulimit -n` would)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@contextmanager
def attacker(port: int, count: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, str(port), str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(10)


async def probe(url: str) -> int | str:
    try:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            return response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__


async def test_idle_connections_beyond_the_cap_never_stop_the_probes_or_the_frames(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * HOSTILE:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to show the difference")
    jsonl = tmp_path / "out.jsonl"
    config = streamer_config(
        embedded_triton.grpc_url,
        [{"name": "lobby", "url": str(sample_clip), "loop": True, "max_fps": 5}],
        jsonl,
        dashboard={"max_connections": CAP, "header_timeout_s": 60},  # the cap, not the timeout
    )
    low = len(os.listdir("/proc/self/fd")) + HOSTILE // 3  # the service alone would run out
    with open_files_limit(low):
        service = Service(config)
        try:
            url = await started(service)
            server = service.metrics.server
            assert server is not None
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(hard, 4 * HOSTILE), (
                "the open-file limit was raised at start"
            )
            with attacker(service.metrics.server.port or 0, HOSTILE) as flood:
                connected = await asyncio.to_thread(flood.stdout.readline)  # type: ignore[union-attr]
                frames_before = len(lobby_frames(jsonl))
                answers, ended = [], time.monotonic() + FLOOD_S
                while time.monotonic() < ended:
                    answers.append(await probe(f"{url}/healthz"))
                    await asyncio.sleep(0.2)
                frames_during = len(lobby_frames(jsonl)) - frames_before
                ready = await probe(f"{url}/readyz")
        finally:
            await service.stop()
    assert int(connected) >= HOSTILE * 0.9, f"the attacker held only {connected} connections"
    assert set(answers) == {200}, f"/healthz under the flood: {answers}"
    assert ready in (200, 503), ready
    assert server.connections.evicted >= int(connected) - CAP
    assert frames_during >= 10, f"only {frames_during} frames processed during the flood"


def lobby_frames(jsonl: Path) -> list[object]:
    return [m for m in jsonl_messages(jsonl) if m.get("type") == "frame" and m.get("camera") == "lobby"]


async def test_silent_slow_and_idle_connections_are_closed_in_time() -> None:
    config = StreamerConfig.model_validate({
        "dashboard": {"port": 0, "header_timeout_s": 1.0, "idle_timeout_s": 2.0},
        "cameras": [{"name": "lobby", "url": "lobby.mp4"}],
    })
    service = MetricsService(config, StatsRegistry())
    await service.start()
    try:
        assert service.server is not None and service.server.port is not None
        port = service.server.port
        silent = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started_at = time.monotonic()
        closed = await asyncio.to_thread(closed_after, [silent, slow], 5.0)
        assert all(t is not None and 0.8 <= t - started_at <= 2.5 for t in closed), closed
        answer_and_close = await asyncio.to_thread(closed_after, [kept], 6.0, True)
        assert answer_and_close[0] is not None and answer_and_close[0] - started_at >= 1.8, (
            "a kept-alive connection that made a request lives on until its idle timeout"
        )
    finally:
        await service.stop()


def closed_after(sockets: list[socket.socket], timeout_s: float, drain: bool = False) -> list[float | None]:
    """When each socket saw the server close it (None: not within `timeout_s`)."""
    result: list[float | None] = []
    deadline = time.monotonic() + timeout_s
    for sock in sockets:
        sock.settimeout(0.1)
        when = None
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                when = time.monotonic()
                break
            if not drain:
                break  # an answer, not a close
        sock.close()
        result.append(when)
    return result
