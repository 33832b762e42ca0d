"""Bounded delivery buffer between the pipeline and a broker connection.

Two lanes with different promises:
- per-frame messages: a short ring; when the broker is slower than the cameras the oldest go
  (counted), because a late position is worth less than the current one;
- lifecycle and identity events: kept in order until the broker acknowledges them, so an outage
  loses nothing up to `event_buffer` events (memory, then an optional spill file) and
  `max_event_age_s`; beyond that the oldest are dropped, counted and logged once per interval.

Events are removed only on acknowledgement (`ack_events(seq)`), so a batch that was in flight when
the connection broke is sent again, in order, after reconnecting. That can duplicate a message the
broker had already accepted; consumers de-duplicate by `id`.

Everything here runs on the event loop and never waits: `put_*` is O(1) (spilled lines are written
in chunks of FLUSH_BYTES, and before reading back). A failing spill file (full disk, I/O error,
truncated by something else) costs the events it held, counted and told in one ERROR line; it never
stops the delivery of the events in memory (see DeliveryBuffer). One spill file serves one
process: a second instance configured with the same one refuses to start (SpillLockedError).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, get_args

from streamer.config import DeliveryConfig
from streamer.core.events import RetainedState
from streamer.core.private import open_private, private_folder

DROP_FRAME_BUFFER_FULL = "frame messages (buffer full)"
DROP_EVENT_BUFFER_FULL = "events (buffer full)"
DROP_EVENT_TOO_OLD = "events (older than max_event_age_s)"
DROP_AT_SHUTDOWN = "messages (not delivered at shutdown)"
DROP_FRAME_SEND_FAILED = "frame messages (connection lost while sending)"
DROP_SPILL_FAILED = "events (spill file failed)"

FLUSH_BYTES = 64 * 1024  # spilled lines are written in chunks this big, and before reading back
LOCK_ATTEMPTS = 3
SPILLED_CONTENTS = "undelivered events of people, embeddings included"
SPILL_RETRY_S = 60.0  # after a spill file failure, memory only for this long, then try it again
RETAINED_TYPES: dict[str, type[RetainedState]] = {kind.type: kind for kind in get_args(RetainedState)}


@dataclass(slots=True)
class PendingEvent:
    """One event waiting for the broker's acknowledgement; `seq` orders and acknowledges it.

    Next to the JSON it keeps what the sinks route on, typed, so they never parse it back: its
    type name, capture time and the retained state it updates (zone occupancy, line counts, a
    track's latest identity).
    """

    seq: int
    camera: str
    message_type: str  # the event's `type` ("new", "zone_enter", "identity", ...)
    message_id: str
    payload: str  # the JSON text, exactly as it will be published
    enqueued_ts: float  # wall clock, so the age limit survives a spill to disk
    capture_ts: float
    state: RetainedState | None = None

    def to_line(self) -> str:
        state = None if self.state is None else [self.state.type, self.state.record()]
        return json.dumps([
            self.seq, self.camera, self.message_type, self.message_id, self.payload,
            self.enqueued_ts, self.capture_ts, state,
        ])

    @classmethod
    def from_line(cls, line: str) -> PendingEvent:
        seq, camera, message_type, message_id, payload, enqueued_ts, capture_ts, state = json.loads(line)
        if state is not None:
            kind, record = state
            state = RETAINED_TYPES[kind].from_record(record)
        return cls(seq, camera, message_type, message_id, payload, enqueued_ts, capture_ts, state)


@dataclass(slots=True)
class PendingFrame:
    camera: str
    capture_ts: float
    message: dict[str, Any]  # serialised by the sender, so dropped frames cost no encoding


class SpillError(Exception):
    """The spill file cannot be used; the message is one line naming the file and the cause.

    `salvaged`: events read back before the problem showed up, still to be delivered.
    """

    def __init__(self, message: str, salvaged: list[PendingEvent] | None = None) -> None:
        super().__init__(message)
        self.salvaged = salvaged or []


class SpillLockedError(SpillError):
    """Another process (a second streamer instance) holds the spill file."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class SpillFile:
    """An append-only file read from the front: the part of the event queue beyond memory.

    Held under an exclusive `flock` from `open()` to `close()`, so a second instance configured
    with the same folder refuses to start instead of truncating this one's file. Lines are
    collected in memory and written with `os.write` (at FLUSH_BYTES, and before reading back), so
    after an error it is known exactly what reached the disk. Every I/O problem is raised as a
    SpillError; the caller decides what is lost (see DeliveryBuffer).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fd: int | None = None
        self._reader: IO[bytes] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._size = 0  # bytes written since the last reset; the file is never shorter
        self._needs_reset = False

    def open(self) -> None:
        if self._fd is not None:
            return
        try:
            private_folder(self.path.parent, SPILLED_CONTENTS)
            fd = self._open_locked()
        except OSError as exc:
            raise SpillError(f"cannot open spill file {self.path}: {_reason(exc)}") from None
        try:
            os.ftruncate(fd, 0)  # not a crash journal: start empty (only now that it is ours)
            reader = open(self.path, "rb")  # noqa: SIM115 - owned until close()
            if not os.path.sameopenfile(reader.fileno(), fd):
                reader.close()
                raise OSError(errno.ESTALE, "replaced while being opened")
        except OSError as exc:
            os.close(fd)
            raise SpillError(f"cannot open spill file {self.path}: {_reason(exc)}") from None
        self._fd, self._reader = fd, reader
        self._forget()
        self._size = 0
        self._needs_reset = False

    def _open_locked(self) -> int:
        """The file, opened without truncating and locked; raises SpillLockedError if held."""
        for _attempt in range(LOCK_ATTEMPTS):
            fd = open_private(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, SPILLED_CONTENTS
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SpillLockedError(
                    f"spill file {self.path} is in use by another streamer instance; give each "
                    "instance its own delivery.spill_dir"
                ) from None
            if self._is_our_file(fd):
                return fd
            os.close(fd)  # the previous holder removed it as it let go: lock the new one
        raise OSError(errno.EBUSY, "keeps being replaced while being opened")

    def _is_our_file(self, fd: int) -> bool:
        """Whether the path still names the file open as `fd` (not removed or replaced)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def append(self, event: PendingEvent, flush: bool = False) -> None:
        """Queue the event (`flush`: write it now); on SpillError it was not added."""
        if self._fd is None:  # publishing before the sink started
            self.open()
        if self._needs_reset:
            self._reset()
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()
        line = (event.to_line() + "\n").encode()
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.count += 1
        if flush:
            try:
                self._flush()
            except SpillError:
                self._pending.pop()
                self._pending_bytes -= len(line)
                self.count -= 1
                raise

    def pop(self, limit: int) -> list[PendingEvent]:
        """Up to `limit` of the oldest events. On SpillError those read so far are `salvaged`."""
        events: list[PendingEvent] = []
        if self.count == 0:
            return events
        try:
            self._flush()
            self._check_length()
            while len(events) < limit and self.count > 0:
                events.append(self._read_one())
                self.count -= 1
            if self.count == 0:
                self._reset()
        except SpillError as exc:
            exc.salvaged = events
            raise
        return events

    def discard(self) -> None:
        """Forget every spilled event (already counted by the caller) and free the disk space."""
        self._forget()
        self._needs_reset = True
        with contextlib.suppress(SpillError):
            self._reset()

    def close(self) -> None:
        """Remove the file (only if it is still ours) and release the lock; never raises."""
        fd, reader = self._fd, self._reader
        self._fd = self._reader = None
        self._forget()
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self._is_our_file(fd):
                self.path.unlink()  # before unlocking, so nobody locks a file about to vanish
        if reader is not None:
            with contextlib.suppress(OSError):
                reader.close()
        with contextlib.suppress(OSError):
            os.close(fd)  # releases the lock

    def _forget(self) -> None:
        self.count = 0
        self._pending.clear()
        self._pending_bytes = 0

    def _flush(self) -> None:
        assert self._fd is not None
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        try:
            while data:
                written = os.write(self._fd, data)
                self._size += written
                data = data[written:]
        except OSError as exc:
            raise SpillError(f"cannot write spill file {self.path}: {_reason(exc)}") from None
        self._pending.clear()
        self._pending_bytes = 0

    def _check_length(self) -> None:
        assert self._fd is not None
        try:
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise SpillError(f"cannot read spill file {self.path}: {_reason(exc)}") from None
        if size < self._size:
            raise SpillError(
                f"spill file {self.path} was truncated by something else ({size} of {self._size} "
                "bytes left)"
            )

    def _read_one(self) -> PendingEvent:
        assert self._reader is not None
        try:
            line = self._reader.readline()
        except OSError as exc:
            raise SpillError(f"cannot read spill file {self.path}: {_reason(exc)}") from None
        if not line.endswith(b"\n"):
            raise SpillError(f"spill file {self.path} ended early (truncated by something else)")
        try:
            return PendingEvent.from_line(line.decode())
        except (ValueError, TypeError, KeyError) as exc:
            raise SpillError(f"spill file {self.path} holds an unreadable line ({exc})") from None

    def _reset(self) -> None:
        """Empty the file so it does not grow for ever; nothing is pending or unread then."""
        if self._fd is None or self._reader is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            self._reader.seek(0)
        except OSError as exc:
            raise SpillError(f"cannot empty spill file {self.path}: {_reason(exc)}") from None
        self._size = 0
        self._needs_reset = False


class DropLog:
    """Counts drops by reason and logs them at most once per interval, never silently."""

    def __init__(self, sink: str, interval_s: float, logger: logging.Logger) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self.log = logger
        self.total: dict[str, int] = {}
        self._unreported: dict[str, int] = {}
        self._last_logged = -float("inf")

    def note(self, reason: str, count: int = 1, reported_elsewhere: bool = False) -> None:
        if count <= 0:
            return
        self.total[reason] = self.total.get(reason, 0) + count
        if not reported_elsewhere:
            self._unreported[reason] = self._unreported.get(reason, 0) + count
            self.report_if_due()

    def report_if_due(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._unreported or (not force and now - self._last_logged < self.interval_s):
            return
        parts = ", ".join(f"{count} {reason}" for reason, count in self._unreported.items())
        self.log.warning("%s: dropped %s", self.sink, parts)
        self._unreported.clear()
        self._last_logged = now


@dataclass
class DeliveryBuffer:
    """Frames and events waiting for the broker; nothing here raises into the pipeline.

    If the spill file fails (full disk, I/O error, truncated or replaced by something else), the
    events it held are counted as dropped with one ERROR line, and for SPILL_RETRY_S (by `clock`)
    events stay in memory, at most `memory_events`, the oldest dropped first as without a spill
    file. Then the file is tried again with one immediate write; while it keeps failing nothing
    more is logged at ERROR, and once it works an INFO line says so.
    """

    settings: DeliveryConfig
    drops: DropLog
    spill_path: Path | None = None
    clock: Callable[[], float] = time.time
    frames: deque[PendingFrame] = field(init=False)
    _events: deque[PendingEvent] = field(init=False, default_factory=deque)
    _spill: SpillFile | None = field(init=False, default=None)
    _next_seq: int = field(init=False, default=0)
    high_water_events: int = field(init=False, default=0)
    _spill_retry_at: float | None = field(init=False, default=None)  # set while the spill failed

    def __post_init__(self) -> None:
        self.frames = deque()
        if self.spill_path is not None:
            self._spill = SpillFile(self.spill_path)

    def open(self) -> None:
        """Take the spill file; raises SpillError (SpillLockedError: used by another instance)."""
        if self._spill is not None:
            self._spill.open()
            self._spill_retry_at = None

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()

    # -- per-frame lane ---------------------------------------------------------------------

    def put_frame(self, frame: PendingFrame) -> None:
        if len(self.frames) >= self.settings.frame_buffer:
            self.frames.popleft()
            self.drops.note(DROP_FRAME_BUFFER_FULL)
        self.frames.append(frame)

    def take_frames(self, limit: int) -> list[PendingFrame]:
        count = min(limit, len(self.frames))
        return [self.frames.popleft() for _ in range(count)]

    # -- event lane -------------------------------------------------------------------------

    @property
    def events_buffered(self) -> int:
        return len(self._events) + (self._spill.count if self._spill is not None else 0)

    @property
    def spilled(self) -> int:
        """Events currently on disk rather than in memory."""
        return self._spill.count if self._spill is not None else 0

    @property
    def buffered(self) -> int:
        return self.events_buffered + len(self.frames)

    def put_event(
        self,
        camera: str,
        message_type: str,
        message_id: str,
        payload: str,
        capture_ts: float,
        state: RetainedState | None = None,
    ) -> None:
        while self.events_buffered >= self._event_capacity() and self._drop_oldest_event():
            pass
        event = PendingEvent(
            self._next_seq, camera, message_type, message_id, payload, self.clock(), capture_ts, state
        )
        self._next_seq += 1
        if not self._spill_event(event):
            self._events.append(event)
        self.high_water_events = max(self.high_water_events, self.events_buffered)

    def _spill_paused(self) -> bool:
        """The spill file failed and it is not yet time to try it again."""
        return self._spill_retry_at is not None and self.clock() < self._spill_retry_at

    def _event_capacity(self) -> int:
        if not self._spill_paused():
            return self.settings.event_buffer
        return min(self.settings.event_buffer, self.settings.memory_events)  # the memory budget

    def _spill_event(self, event: PendingEvent) -> bool:
        """Put the event in the spill file if it belongs there; False: keep it in memory."""
        spill = self._spill
        if spill is None or not (spill.count or len(self._events) >= self.settings.memory_events):
            return False
        if self._spill_paused():
            return False
        retrying = self._spill_retry_at is not None
        try:
            spill.append(event, flush=retrying)  # a retry is judged by a real write
        except SpillError as exc:
            self._spill_failed(exc)
            return False
        if retrying:
            self._spill_retry_at = None
            self.drops.log.info("%s: spill file %s works again", self.drops.sink, spill.path)
        return True

    def _spill_failed(self, exc: SpillError) -> None:
        """Count what the file held as dropped, free it, and keep events in memory for a while."""
        assert self._spill is not None
        lost = self._spill.count
        self._spill.discard()
        self.drops.note(DROP_SPILL_FAILED, lost, reported_elsewhere=True)
        already_failed = self._spill_retry_at is not None
        self._spill_retry_at = self.clock() + SPILL_RETRY_S
        if already_failed:
            self.drops.log.debug("%s: %s (still; retrying in %g s)", self.drops.sink, exc, SPILL_RETRY_S)
            return
        self.drops.log.error(
            "%s: %s; %d spilled events dropped; events stay in memory (at most %d, oldest dropped "
            "first) and the spill file is tried again in %g s",
            self.drops.sink, exc, lost, self._event_capacity(), SPILL_RETRY_S,
        )

    def peek_events(self, limit: int) -> list[PendingEvent]:
        """The oldest events, in order, still held until `ack_events`."""
        self._refill()
        self._drop_expired()
        count = min(limit, len(self._events))
        return [self._events[i] for i in range(count)]

    def ack_events(self, up_to_seq: int) -> None:
        while self._events and self._events[0].seq <= up_to_seq:
            self._events.popleft()

    def drop_everything(self) -> int:
        """At shutdown: count what could not be delivered and let it go (the caller logs it)."""
        lost = self.buffered
        self._events.clear()
        self.frames.clear()
        if self._spill is not None:
            self._spill.discard()  # no reading back: a damaged file cannot keep this from ending
        self.drops.note(DROP_AT_SHUTDOWN, lost, reported_elsewhere=True)
        return lost

    def _refill(self) -> None:
        """Move the oldest spilled events to memory; a failing file empties the spill lane."""
        spill = self._spill
        if spill is None or not spill.count or len(self._events) >= self.settings.memory_events:
            return
        try:
            events = spill.pop(self.settings.memory_events - len(self._events))
        except SpillError as exc:
            events = exc.salvaged
            self._spill_failed(exc)
        self._events.extend(events)

    def _drop_oldest_event(self) -> bool:
        if not self._events:
            self._refill()
        if not self._events:
            return False
        self._events.popleft()
        self.drops.note(DROP_EVENT_BUFFER_FULL)
        return True

    def _drop_expired(self) -> None:
        limit = self.settings.max_event_age_s
        if limit is None:
            return
        oldest_allowed = self.clock() - limit
        expired = 0
        while self._events and self._events[0].enqueued_ts < oldest_allowed:
            self._events.popleft()
            expired += 1
            if not self._events:
                self._refill()
        self.drops.note(DROP_EVENT_TOO_OLD, expired)
