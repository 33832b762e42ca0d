"""The JSON-lines sink when its reader stalls or its output fails: shutdown stays bounded and
never blocks the event loop, the process can still exit, and every line not written is counted.
And what it writes: frames, events and camera statuses, each a schema-valid message."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamer.config import JsonlSinkConfig
from streamer.core.events import CameraStatusEvent
from streamer.core.stats import CameraState
from streamer.publishing.jsonl import JsonlSink
from streamer.publishing.messages import camera_status_message
from tests.publishing.faults import fill_pipe
from tests.publishing.support import SyntheticCamera, validate, wait_until

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
FRAMES = 300
SLACK_S = 1.0  # scheduling noise on a busy 2-core machine
TICK_S = 0.01
EXIT_TIMEOUT_S = 20.0
LOGGER = "streamer.publishing.jsonl"


def publish_frames(sink: JsonlSink, frames: int) -> int:
    """What the pipeline does for `frames` frames of one camera; returns the lines produced."""
    camera = SyntheticCamera("cam")
    lines = 0
    for _ in range(frames):
        result, events = camera.step()
        sink.publish_frame(result)
        sink.publish_events(events)
        lines += 1 + len(events)
    return lines


async def count_ticks(ticks: list[float]) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(TICK_S)


async def test_stop_with_a_stalled_pipe_reader_is_bounded_and_counts_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read_end, write_end = os.pipe()  # the read end is never read
    try:
        fill_pipe(write_end)
        sink = JsonlSink(JsonlSinkConfig(path=f"/dev/fd/{write_end}"))
        await sink.start()
        lines = publish_frames(sink, FRAMES)
        ticks: list[float] = []
        ticker = asyncio.create_task(count_ticks(ticks))
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            await sink.stop()
        elapsed = time.monotonic() - started
        ticker.cancel()
    finally:
        os.close(read_end)  # the abandoned writer's write fails now (EPIPE) and its thread ends
        os.close(write_end)

    stop_timeout_s = JsonlSinkConfig().stop_timeout_s
    assert elapsed < stop_timeout_s + SLACK_S, f"stop() took {elapsed:.2f} s"
    assert len(ticks) >= stop_timeout_s / TICK_S / 4, "the event loop was blocked during stop()"
    assert (sink.written, sink.dropped) == (0, lines)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"{lines} lines dropped" in warnings[0] and "stop timeout" in warnings[0], warnings[0]


CHILD = f"""
import asyncio, logging, sys
from streamer.config import JsonlSinkConfig
from streamer.publishing.jsonl import JsonlSink
from tests.publishing.test_jsonl_sink import publish_frames

async def main():
    sink = JsonlSink(JsonlSinkConfig(path="-"))
    await sink.start()
    publish_frames(sink, {FRAMES})
    await asyncio.sleep(0.2)  # the writer fills the pipe and blocks in write()
    await sink.stop()
    print("stopped", file=sys.stderr, flush=True)

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
asyncio.run(main())
"""


def test_process_exits_while_its_writer_is_stuck_on_standard_output(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as errors:
        child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=errors)
    try:
        returncode = child.wait(timeout=EXIT_TIMEOUT_S)  # its standard output is never read
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()
    log = stderr.read_text()
    assert returncode == 0, log
    assert "stopped" in log and "lines dropped writing to standard output" in log, log


async def test_write_errors_are_counted_once_and_stop_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = JsonlSink(JsonlSinkConfig(path="/dev/full"))  # every write: ENOSPC
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await sink.start()
        lines = publish_frames(sink, FRAMES)
        await wait_until(lambda: sink.stats().buffered == 0, 10, "the writer to try every line")
        await sink.stop()
    assert (sink.written, sink.dropped) == (0, lines)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "/dev/full" in errors[0] and "No space left on device" in errors[0], errors[0]


async def test_camera_statuses_are_written_like_frames_and_events(tmp_path: Path) -> None:
    """JSON lines carries the `camera_status` messages the broker sinks publish, in order."""
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(JsonlSinkConfig(path=str(path)))
    await sink.start()
    statuses = [
        CameraStatusEvent("cam", CameraState.CONNECTING.value),
        CameraStatusEvent("cam", CameraState.STREAMING.value),
        CameraStatusEvent("cam", CameraState.BACKOFF.value, "stream ended"),
        CameraStatusEvent("cam", CameraState.STOPPED.value),
    ]
    sink.publish_status(statuses[0])
    sink.publish_status(statuses[1])
    lines = 2 + publish_frames(sink, 3)
    for status in statuses[2:]:
        sink.publish_status(status)
    lines += 2
    await sink.stop()

    messages = [json.loads(line) for line in path.read_text().splitlines()]
    assert (sink.written, sink.dropped, len(messages)) == (lines, 0, lines)
    for message in messages:
        validate(message)
    written = [m for m in messages if m["type"] == "camera_status"]
    assert written == [camera_status_message(status) for status in statuses]
    assert [m["type"] for m in messages[:3]] == ["camera_status", "camera_status", "frame"]
    assert messages[-1]["status"] == "stopped"
