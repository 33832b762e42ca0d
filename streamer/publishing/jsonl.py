"""JSON lines, one per processed frame, to standard output or a file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import IO

from streamer.config import JsonlSinkConfig
from streamer.core.events import Event
from streamer.core.frames import FrameResult
from streamer.publishing.base import Sink, SinkStats
from streamer.publishing.messages import event_message, frame_message, to_json

log = logging.getLogger(__name__)

BUFFER_LINES = 10_000
WRITE_BATCH_LINES = 256


class JsonlSink(Sink):
    """Writes in a worker thread, so a slow reader of a pipe never stalls the pipeline."""

    name = "jsonl"

    def __init__(self, settings: JsonlSinkConfig) -> None:
        self.settings = settings
        self.dropped = 0
        self.written = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue(BUFFER_LINES)
        self._task: asyncio.Task[None] | None = None
        self._stream: IO[str] | None = None

    async def start(self) -> None:
        if self.settings.path == "-":
            self._stream = sys.stdout
        else:
            self._stream = open(self.settings.path, "a", encoding="utf-8")  # noqa: SIM115
        self._task = asyncio.create_task(self._write_forever(), name="sink:jsonl")

    def stats(self) -> SinkStats:
        return SinkStats(
            published=self.written, buffered=self._queue.qsize(), dropped=self.dropped
        )

    def publish(self, result: FrameResult) -> None:
        line = to_json(frame_message(result))
        try:
            self._queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1

    def publish_events(self, events: Sequence[Event]) -> None:
        for event in events:
            line = to_json(event_message(event))
            try:
                self._queue.put_nowait(line)
            except asyncio.QueueFull:
                self.dropped += 1

    async def _write_forever(self) -> None:
        while True:
            lines = [await self._queue.get()]
            while len(lines) < WRITE_BATCH_LINES and not self._queue.empty():
                lines.append(self._queue.get_nowait())
            await asyncio.to_thread(self._write, lines)

    def _write(self, lines: list[str]) -> None:
        assert self._stream is not None
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()
        self.written += len(lines)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        remaining = []
        while not self._queue.empty():
            remaining.append(self._queue.get_nowait())
        if remaining and self._stream is not None:
            with contextlib.suppress(OSError):
                self._write(remaining)
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
        if self.dropped:
            log.warning("jsonl: %d lines dropped because the output was too slow", self.dropped)
