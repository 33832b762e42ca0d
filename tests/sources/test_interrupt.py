"""A stopped camera lets go of its thread and socket within a second, whatever its timeouts.

Previously a removed camera kept both until its open timeout (up to a day): a `udp://0.0.0.0:PORT`
camera went on listening on every interface after it was deleted.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from streamer.config import CameraConfig
from streamer.sources.camera import CameraSource
from streamer.sources.interrupt import installed
from tests.support.listeners import TcpRecorder

DAY_S = 86400.0
LET_GO_S = 1.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def camera_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"camera:{name}" and t.is_alive()]


async def until(check: object, timeout_s: float) -> float:
    """Seconds until `check()` held; fails after `timeout_s`."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def never_timing_out(name: str, url: str) -> CameraConfig:
    return CameraConfig(name=name, url=url, open_timeout_s=DAY_S, read_timeout_s=DAY_S)


async def test_a_stopped_udp_listener_frees_its_port_and_thread_within_a_second() -> None:
    assert installed(), "the interrupt clock is in PyAV's container module"
    port = free_udp_port()
    source = CameraSource(never_timing_out("listener", f"udp://0.0.0.0:{port}"))
    source.start()
    await until(lambda: udp_port_taken(port), 10.0)
    started = time.monotonic()
    await source.stop()
    await until(lambda: not udp_port_taken(port) and not camera_threads("listener"), 5.0)
    assert time.monotonic() - started < LET_GO_S


async def test_a_stopped_camera_whose_server_never_answers_hangs_up_within_a_second() -> None:
    with TcpRecorder() as silent:
        source = CameraSource(never_timing_out("silent", f"rtsp://127.0.0.1:{silent.port}/s"))
        source.start()
        await until(lambda: silent.connections == 1, 10.0)
        started = time.monotonic()
        await source.stop()
        await until(lambda: not camera_threads("silent"), 5.0)
        assert time.monotonic() - started < LET_GO_S
        # the other cameras' threads are not touched: only the stopped one was interrupted
        other = CameraSource(never_timing_out("other", f"rtsp://127.0.0.1:{silent.port}/t"))
        other.start()
        await until(lambda: silent.connections == 2, 10.0)
        await asyncio.sleep(0.5)
        assert camera_threads("other"), "a camera that was not stopped keeps waiting"
        await other.stop()
