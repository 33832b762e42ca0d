"""JSON lines to standard output or a file: one per processed frame, track or identity event, and
camera status change (the same messages as the broker sinks). The periodic `stats` message and
the service's availability are MQTT and Redis only: an operator reading a file or pipe has
`streamer stats` and the metrics for those.

One daemon thread owns the output and does every write; the pipeline only appends to a bounded
queue. A reader that stalls (a pipe nobody reads) therefore never blocks the event loop, and
`stop()` waits for the last lines at most `stop_timeout_s`: whatever is not written by then is
counted as dropped and the thread is abandoned. It is a daemon thread, not an executor thread
(`asyncio.to_thread` ones are joined at interpreter exit), so a write stuck for ever does not keep
the process from exiting. Writes go straight to the file descriptor (`os.write`), never through
`sys.stdout`'s buffer: a thread blocked inside that buffer holds its lock, and the interpreter's
final flush of stdout would then abort the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Protocol

from streamer.config import JsonlSinkConfig
from streamer.core.events import CameraStatusEvent, Event
from streamer.core.frames import FrameResult
from streamer.core.interfaces import Sink
from streamer.core.private import open_private
from streamer.core.stats import SinkStats
from streamer.publishing.messages import (
    camera_status_message,
    event_message,
    frame_message,
    to_json,
)

log = logging.getLogger(__name__)

BUFFER_LINES = 10_000
WRITE_BATCH_LINES = 256


class Output(Protocol):
    """Where the lines go; used only from the writer thread."""

    description: str

    def write(self, text: str) -> None: ...

    def close(self) -> None: ...


class FdOutput:
    """A file descriptor written with os.write: no Python-level lock is held while blocked."""

    def __init__(self, fd: int, description: str, owned: bool) -> None:
        self.fd = fd
        self.description = description
        self.owned = owned

    def write(self, text: str) -> None:
        view = memoryview(text.encode())
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # someone made the descriptor non-blocking: wait, don't drop
                select.select([], [self.fd], [])

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)


class StreamOutput:
    """A text stream without a file descriptor (sys.stdout replaced, e.g. by a test runner)."""

    def __init__(self, stream: IO[str], description: str) -> None:
        self.stream = stream
        self.description = description

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        """Not ours to close."""


def open_output(path: str) -> Output:
    """The output for `path` ('-' = standard output), opened for appending."""
    if path != "-":
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        holds = "tracks, events and identities of people (embeddings unless publishing.embeddings is off)"
        return FdOutput(open_private(path, flags, holds), path, owned=True)
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return StreamOutput(stream, "standard output")
    stream.flush()  # whatever was printed before comes first
    return FdOutput(fd, "standard output", owned=False)


class LineWriter:
    """A bounded queue of lines and the daemon thread that writes them, in batches.

    Counters change under the lock so the event loop reads consistent numbers; once abandoned
    at shutdown, whatever the thread still does is no longer counted (already counted as dropped).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.written = 0
        self.failed = 0
        self._lines: deque[str] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._abandoned = False
        self._failing = False

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._lines) + self._in_flight

    def offer(self, line: str) -> bool:
        """Queue a line; False (never waits) when the queue is full or the writer closed."""
        with self._cond:
            if self._closing or len(self._lines) >= self.capacity:
                return False
            self._lines.append(line)
            self._cond.notify()
            return True

    def start(self, output: Output, on_finished: Callable[[], None]) -> None:
        thread = threading.Thread(
            target=self._run, args=(output, on_finished), name="sink:jsonl:writer", daemon=True
        )
        thread.start()

    def close(self) -> None:
        """Write what is queued, then finish."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def abandon(self) -> int:
        """Give up on what is not written yet; returns how many lines that is."""
        with self._cond:
            self._closing = self._abandoned = True
            lost = len(self._lines) + self._in_flight
            self._lines.clear()
            self._in_flight = 0
            return lost

    def _run(self, output: Output, on_finished: Callable[[], None]) -> None:
        try:
            while batch := self._next_batch():
                self._write(output, batch)
        finally:
            with contextlib.suppress(OSError):
                output.close()
            on_finished()

    def _next_batch(self) -> list[str]:
        with self._cond:
            while not self._lines and not self._closing:
                self._cond.wait()
            count = min(WRITE_BATCH_LINES, len(self._lines))
            batch = [self._lines.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _write(self, output: Output, batch: list[str]) -> None:
        try:
            output.write("\n".join(batch) + "\n")
        except (OSError, ValueError) as exc:  # ValueError: a stream closed under us
            self._count(failed=len(batch), error=exc, where=output.description)
        else:
            self._count(written=len(batch))

    def _count(
        self, written: int = 0, failed: int = 0, error: Exception | None = None, where: str = ""
    ) -> None:
        with self._cond:
            self._in_flight = 0
            if self._abandoned:
                return
            self.written += written
            self.failed += failed
            newly_failing = error is not None and not self._failing
            self._failing = error is not None
        if newly_failing:  # once per failure streak, not once per batch
            log.error("jsonl: cannot write to %s (%s); dropping lines until it works", where, error)


class JsonlSink(Sink):
    """Writes in a daemon thread, so a slow reader of a pipe never stalls the pipeline or shutdown."""

    name = "jsonl"

    def __init__(self, settings: JsonlSinkConfig) -> None:
        self.settings = settings
        self.stop_timeout_s = settings.stop_timeout_s
        self.queue_full = 0  # lines refused because the output was too slow
        self.lost_at_stop = 0  # lines still unwritten when stop() gave up waiting
        self._writer = LineWriter(BUFFER_LINES)
        self._finished: asyncio.Event | None = None
        self._where = "standard output" if settings.path == "-" else settings.path

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def dropped(self) -> int:
        return self.queue_full + self._writer.failed + self.lost_at_stop

    async def start(self) -> None:
        if self._finished is not None:
            return
        output = open_output(self.settings.path)
        loop = asyncio.get_running_loop()
        finished = self._finished = asyncio.Event()

        def on_finished() -> None:  # runs in the writer thread
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
                loop.call_soon_threadsafe(finished.set)

        self._writer.start(output, on_finished)

    def stats(self) -> SinkStats:
        return SinkStats(published=self.written, buffered=self._writer.pending, dropped=self.dropped)

    def publish_frame(self, result: FrameResult) -> None:
        self._offer(to_json(frame_message(result)))

    def publish_events(self, events: Sequence[Event]) -> None:
        for event in events:
            self._offer(to_json(event_message(event, embeddings=self.settings.embeddings is not False)))

    def publish_status(self, status: CameraStatusEvent) -> None:
        self._offer(to_json(camera_status_message(status)))

    def _offer(self, line: str) -> None:
        if not self._writer.offer(line):
            self.queue_full += 1

    async def stop(self) -> None:
        """Let the writer finish for at most stop_timeout_s; what is left then is dropped."""
        self._writer.close()
        if self._finished is None:  # never started: nothing was written
            self.lost_at_stop += self._writer.abandon()
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.stop_timeout_s):
                    await self._finished.wait()
            if not self._finished.is_set():
                self.lost_at_stop += self._writer.abandon()
        self._report_drops()

    def _report_drops(self) -> None:
        """One WARNING line for everything this sink dropped, by cause."""
        causes = [
            (self.queue_full, "output too slow"),
            (self._writer.failed, "write failed"),
            (self.lost_at_stop, f"not written within stop timeout {self.stop_timeout_s:g} s"),
        ]
        parts = ", ".join(f"{count} {why}" for count, why in causes if count)
        if parts:
            log.warning("jsonl: %d lines dropped writing to %s (%s)", self.dropped, self._where, parts)
