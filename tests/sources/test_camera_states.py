"""A camera's states with real broken files: loop points, decode errors, no frames, backoff, logs.

Every clip is tiny (64x48, a few frames) and made here; reconnect delays are tenths of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamer.sources.camera as camera_module
from streamer.config import CameraConfig, ReconnectConfig
from streamer.core.frames import Frame
from streamer.core.stats import CameraState
from streamer.sources.camera import CameraSource
from tests.support.media import (
    corrupt_annexb,
    corrupt_mp4_samples,
    make_empty_clip,
    make_pattern_clip,
    pattern_index,
)

WIDTH, HEIGHT, FPS, GOP = 64, 48, 10, 5
CLIP_FRAMES = 30
# 0.1, 0.2, 0.4, 0.4, ...: about eight attempts in 2.5 s
SLOW_RECONNECT = ReconnectConfig(initial_delay_s=0.1, max_delay_s=0.4, multiplier=2, healthy_after_s=5)
FAST_RECONNECT = ReconnectConfig(initial_delay_s=0.05, max_delay_s=0.2, healthy_after_s=5)
CAMERA_LOGGER = "streamer.sources.camera"
EXTENSIONS = {"mp4": "mp4", "mpegts": "ts", "h264": "h264"}


def camera(url: str | Path, **overrides: Any) -> CameraConfig:
    overrides.setdefault("reconnect", FAST_RECONNECT)
    return CameraConfig(name="cam", url=str(url), **overrides)


def clip(folder: Path, frames: int, container_format: str = "mp4", name: str = "clip") -> Path:
    return make_pattern_clip(
        folder / f"{name}.{EXTENSIONS[container_format]}", width=WIDTH, height=HEIGHT,
        frames=frames, fps=FPS, gop=GOP, container_format=container_format,
    )


class Statuses:
    """What `on_status` reported, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[CameraState, str | None]] = []

    def __call__(self, _name: str, state: CameraState, detail: str | None) -> None:
        self.seen.append((state, detail))

    @property
    def states(self) -> list[CameraState]:
        return [state for state, _ in self.seen]


class Opens:
    """Every time the source opened its stream: (started, returned or raised), monotonic."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.times)


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Opens:
    record = Opens()
    real_open = camera_module.open_stream

    def counted(config: CameraConfig) -> Any:
        started = time.monotonic()
        try:
            return real_open(config)
        finally:
            record.times.append((started, time.monotonic()))

    monkeypatch.setattr(camera_module, "open_stream", counted)
    return record


@pytest.fixture
def camera_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=CAMERA_LOGGER)
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.name == CAMERA_LOGGER and r.levelno >= logging.WARNING
    ]


def chatter_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """INFO and above: what an operator reads."""
    return [r.getMessage() for r in caplog.records if r.name == CAMERA_LOGGER and r.levelno >= logging.INFO]


async def take(source: CameraSource, count: int, within_s: float = 10.0) -> list[Frame]:
    """Up to `count` frames, fewer if the source ends; fails after `within_s`."""

    async def collect() -> list[Frame]:
        frames: list[Frame] = []
        while len(frames) < count:
            frame = await source.next_frame()
            if frame is None:
                break
            frames.append(frame)
        return frames

    return await asyncio.wait_for(collect(), within_s)


# -- looping files -------------------------------------------------------------------------------


async def test_looping_file_stays_streaming_across_its_loop_points(
    tmp_path: Path, opens: Opens, camera_logs: pytest.LogCaptureFixture
) -> None:
    """Previously every loop said connecting -> online: two status messages and two INFO lines."""
    statuses = Statuses()
    source = CameraSource(camera(clip(tmp_path, 3), loop=True, pacing="fast"), on_status=statuses)
    source.start()
    frames = await take(source, 3 * 12)  # twelve passes through a 3-frame file
    await source.stop()
    assert len(frames) == 36
    assert [f.index for f in frames] == list(range(1, 37))
    assert len(opens) >= 12  # it did reach its end and start over, again and again
    assert statuses.states == [CameraState.STREAMING, CameraState.STOPPED]
    assert source.stats.reconnects == 0
    assert chatter_of(camera_logs) == []


@pytest.mark.parametrize("frames", [1, 3])
async def test_short_looping_file_keeps_its_frame_rate(tmp_path: Path, frames: int) -> None:
    """Played in real time, a 1- or 3-frame file at 10 fps gives 10 frames a second, not hundreds."""
    statuses = Statuses()
    source = CameraSource(camera(clip(tmp_path, frames), loop=True), on_status=statuses)
    source.start()
    await take(source, 1)
    started, cpu_started = time.monotonic(), time.process_time()
    decoded_before = source.stats.decoded
    await asyncio.sleep(2.0)
    decoded = source.stats.decoded - decoded_before
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    await source.stop()
    assert 5 <= decoded <= FPS * elapsed + 2, (decoded, elapsed)
    assert cpu < 0.5 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"
    assert statuses.states == [CameraState.STREAMING, CameraState.STOPPED]


# -- decode errors in files ------------------------------------------------------------------------


def broken_in_the_middle(folder: Path, container_format: str) -> Path:
    """A 30-frame clip whose middle fails to decode while the demuxer reads on."""
    path = clip(folder, CLIP_FRAMES, container_format)
    if container_format == "mp4":
        return corrupt_mp4_samples(path, first=12, count=3)
    return corrupt_annexb(path, 0.4, 0.55)


@pytest.mark.parametrize("container_format", ["mp4", "mpegts", "h264"])
async def test_decode_errors_in_a_file_skip_ahead_and_never_replay_it(
    tmp_path: Path, container_format: str, camera_logs: pytest.LogCaptureFixture
) -> None:
    """Previously a decode error restarted the file from its beginning, forever."""
    statuses = Statuses()
    source = CameraSource(
        camera(broken_in_the_middle(tmp_path, container_format), pacing="fast"), on_status=statuses
    )
    source.start()
    frames = await take(source, 2 * CLIP_FRAMES)
    await source.stop()
    shown = [pattern_index(f.image, CLIP_FRAMES) for f in frames]
    assert 0 < len(frames) < CLIP_FRAMES, shown  # the broken packets were skipped...
    assert shown[0] == 0 and shown[-1] == CLIP_FRAMES - 1, shown  # ...decoding went on to the end
    assert shown.count(CLIP_FRAMES - 1) == 1, shown  # ...and the file was played once
    assert source.stats.errors > 0
    assert source.stats.last_error is not None and "undecodable" in source.stats.last_error
    assert source.stats.reconnects == 0
    assert statuses.states == [CameraState.STREAMING, CameraState.FINISHED]
    assert any("end of file" in line for line in chatter_of(camera_logs))


async def test_decode_errors_in_a_looping_file_keep_it_streaming(tmp_path: Path) -> None:
    statuses = Statuses()
    source = CameraSource(
        camera(broken_in_the_middle(tmp_path, "mp4"), pacing="fast", loop=True), on_status=statuses
    )
    source.start()
    frames = await take(source, 3 * CLIP_FRAMES)  # three passes and more
    await source.stop()
    assert len(frames) == 3 * CLIP_FRAMES
    assert source.stats.errors >= 3
    assert source.stats.reconnects == 0
    assert statuses.states == [CameraState.STREAMING, CameraState.STOPPED]


# -- files without a single decodable frame -------------------------------------------------------


def empty_annexb(folder: Path) -> Path:
    return make_empty_clip(folder / "empty.h264")  # 0 bytes, yet FFmpeg opens it


def mp4_without_frames(folder: Path) -> Path:
    return make_empty_clip(folder / "noframes.mp4", container_format="mp4")


def mp4_all_undecodable(folder: Path) -> Path:
    return corrupt_mp4_samples(clip(folder, 3), first=0, count=3)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (empty_annexb, "no decodable video frame"),
        (mp4_without_frames, "no video stream"),
        (mp4_all_undecodable, "no decodable video frame"),
    ],
    ids=["empty-h264", "mp4-without-frames", "mp4-all-undecodable"],
)
async def test_looping_file_without_a_frame_fails_once_without_busy_looping(
    tmp_path: Path, make: Any, reason: str, opens: Opens, camera_logs: pytest.LogCaptureFixture
) -> None:
    """Previously an empty looping file was reopened hundreds of times a second."""
    path = make(tmp_path)
    statuses = Statuses()
    source = CameraSource(camera(path, loop=True, reconnect=SLOW_RECONNECT), on_status=statuses)
    started, cpu_started = time.monotonic(), time.process_time()
    source.start()
    await asyncio.sleep(2.5)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    attempts = len(opens)
    await source.stop()
    # the backoff's pace (0.1, 0.2, 0.4, 0.4, ... s): about eight attempts, not hundreds
    assert 3 <= attempts <= 9, attempts
    assert cpu < 0.3 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"
    assert statuses.states == [CameraState.FAILED, CameraState.STOPPED]
    detail = statuses.seen[0][1]
    assert detail is not None and reason in detail
    warnings = warnings_of(camera_logs)
    assert len(warnings) == 1 and reason in warnings[0], warnings


# -- repeated failures, backoff --------------------------------------------------------------------


async def test_the_same_failure_is_logged_once_and_recovery_is_news(
    tmp_path: Path, camera_logs: pytest.LogCaptureFixture
) -> None:
    """Previously a missing file logged one WARNING per attempt."""
    path = tmp_path / "later.mp4"
    statuses = Statuses()
    source = CameraSource(camera(path, pacing="fast"), on_status=statuses)
    source.start()
    await asyncio.sleep(1.0)
    attempts = source.stats.reconnects
    os.replace(clip(tmp_path / "elsewhere", 3), path)  # the file appears, whole
    frames = await take(source, 10)
    await source.stop()
    assert attempts >= 4
    warnings = warnings_of(camera_logs)
    assert len(warnings) == 1 and "later.mp4" in warnings[0], warnings
    # not found is a configuration problem (failed), retried at the backoff's pace until it works
    assert statuses.states == [CameraState.FAILED, CameraState.STREAMING, CameraState.FINISHED]
    assert len(frames) == 3


class TcpServer:
    """A local TCP server that accepts every connection and either never answers (`reply` None:
    every open runs into its timeout) or answers `reply` and hangs up."""

    def __init__(self, reply: bytes | None) -> None:
        self._reply = reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._accepted: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"rtsp://user:secret@127.0.0.1:{self._listener.getsockname()[1]}/cam"

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                connection = self._listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            if self._reply is None:
                self._accepted.append(connection)
                continue
            with contextlib.suppress(OSError), connection:
                connection.settimeout(1.0)
                connection.recv(4096)
                connection.sendall(self._reply)

    def close(self) -> None:
        self._done.set()
        self._thread.join(1.0)
        self._listener.close()
        for connection in self._accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    server = TcpServer(reply=None)
    yield server.url
    server.close()


@pytest.fixture
def nonsense_server() -> Iterator[str]:
    server = TcpServer(reply=b"nonsense\r\n\r\n")
    yield server.url
    server.close()


async def test_long_open_timeouts_do_not_reset_the_backoff(silent_server: str, opens: Opens) -> None:
    """Previously an attempt that lasted healthy_after_s (here: an open timing out) reset the delay."""
    reconnect = ReconnectConfig(initial_delay_s=0.1, max_delay_s=0.8, multiplier=2, healthy_after_s=0.2)
    statuses = Statuses()
    source = CameraSource(
        camera(silent_server, reconnect=reconnect, open_timeout_s=0.3, read_timeout_s=0.3),
        on_status=statuses,
    )
    source.start()
    deadline = time.monotonic() + 8
    while len(opens) < 4:
        assert time.monotonic() < deadline, f"only {len(opens)} attempts"
        await asyncio.sleep(0.05)
    await source.stop()
    durations = [end - start for start, end in opens.times[:4]]
    assert min(durations) >= 0.25, durations  # each attempt waited for its open timeout
    gaps = [opens.times[i + 1][0] - opens.times[i][1] for i in range(3)]
    # 0.1, 0.2, 0.4 s: the delay grows although every attempt lasted longer than healthy_after_s
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] >= 0.35, gaps
    # a server that does not answer is an outage (backoff), not a configuration problem (failed)
    assert statuses.states[0] == CameraState.BACKOFF, statuses.seen
    assert CameraState.STREAMING not in statuses.states
    assert source.stats.last_error is not None and "secret" not in source.stats.last_error


async def test_a_stream_that_answers_nonsense_at_once_is_failed(nonsense_server: str) -> None:
    """The other side of the open timeout: a quick invalid answer is a configuration problem."""
    statuses = Statuses()
    source = CameraSource(
        camera(nonsense_server, open_timeout_s=2, read_timeout_s=2), on_status=statuses
    )
    source.start()
    deadline = time.monotonic() + 5
    while not statuses.seen:
        assert time.monotonic() < deadline, "no state within 5 s"
        await asyncio.sleep(0.02)
    await source.stop()
    state, detail = statuses.seen[0]
    assert state == CameraState.FAILED
    assert detail is not None and "InvalidDataError" in detail and "secret" not in detail
