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
in chunks of FLUSH_BYTES). A spill file that cannot be written (a full disk) keeps every event it
holds, on disk and in memory: only new events beyond the memory budget are lost, counted and told
once, and the file is written again as soon as there is room (free space probed with a short,
capped backoff). A file that cannot be read back (truncated by something else) costs the events it
held, counted and told in one ERROR line. Neither stops the delivery of the events in memory (see
DeliveryBuffer). One spill file serves one process: a second instance configured with the same one
refuses to start (SpillLockedError).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
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
DROP_SPILL_FULL = "events (spill file cannot be written, memory budget reached)"

FLUSH_BYTES = 64 * 1024  # spilled lines are written in chunks this big, and before reading back
LOCK_ATTEMPTS = 3
SPILLED_CONTENTS = "undelivered events of people, embeddings included"
# A spill file that cannot be written: its free space is looked at (statvfs, cheap) this often,
# and written as soon as there is room. A write that fails although there seemed to be room (or a
# file that failed otherwise) is tried again after SPILL_RETRY_MIN_S, doubling up to the cap.
SPILL_PROBE_S = 0.1
SPILL_RETRY_MIN_S = 0.1
SPILL_RETRY_MAX_S = 2.0
SPILL_ROOM = 64 * 1024  # free space beyond what is waiting that a retry wants to see first
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


def _parse(line: bytes, path: Path) -> PendingEvent:
    try:
        return PendingEvent.from_line(line.decode())
    except (ValueError, TypeError, KeyError) as exc:
        raise SpillError(f"spill file {path} holds an unreadable line ({exc})") from None


class SpillFile:
    """An append-only file read from the front: the part of the event queue beyond memory.

    Held under an exclusive `flock` from `open()` to `close()`, so a second instance configured
    with the same folder refuses to start instead of truncating this one's file. Lines are
    collected in memory (`_pending`, newer than every line in the file) and written with
    `os.write` at FLUSH_BYTES, so after an error it is known exactly what reached the disk: whole
    lines stay, a torn last line is cut off, and what was not written stays pending (`blocked`
    until `retry()` writes it). Reading takes the file's lines first, then the pending ones, so
    reading never needs a write. Problems reading back are raised as SpillError; the caller
    decides what is lost (see DeliveryBuffer).
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
        self.blocked: str | None = None  # why the last write failed; None while writes work

    @property
    def unwritten(self) -> int:
        """Events held in memory, not (yet) on disk."""
        return len(self._pending)

    @property
    def unwritten_bytes(self) -> int:
        return self._pending_bytes

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

    def append(self, event: PendingEvent) -> None:
        """Add the event: always kept (in memory while writes are `blocked`); raises SpillError
        only when the file cannot be opened or emptied."""
        if self._fd is None:  # publishing before the sink started
            self.open()
        if self._needs_reset:
            self._reset()
        if self.blocked is None and self._pending_bytes >= FLUSH_BYTES:
            self._flush()
        line = (event.to_line() + "\n").encode()
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.count += 1

    def retry(self) -> bool:
        """Write what is pending; True once it all reached the disk (writes work again)."""
        self._flush()
        return self.blocked is None

    def pop(self, limit: int) -> list[PendingEvent]:
        """Up to `limit` of the oldest events: the file's, then the pending ones. On SpillError
        (the file cannot be read back) those read so far are `salvaged`."""
        events: list[PendingEvent] = []
        if self.count == 0:
            return events
        try:
            on_disk = self.count - len(self._pending)
            if on_disk:
                self._check_length()
            while len(events) < limit and on_disk > 0:
                events.append(self._read_one())
                self.count -= 1
                on_disk -= 1
            taken = self._pending[: limit - len(events)] if on_disk == 0 else []
            if taken:
                del self._pending[: len(taken)]
                self._pending_bytes -= sum(len(line) for line in taken)
                self.count -= len(taken)
                events.extend(_parse(line, self.path) for line in taken)
            if self.count == 0:
                self._reset()
        except SpillError as exc:
            exc.salvaged = events
            raise
        return events

    def take_pending(self) -> list[PendingEvent]:
        """The events held in memory (the newest), taken out: what a failed file still saves."""
        events = [_parse(line, self.path) for line in self._pending]
        self.count -= len(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
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
        self.blocked = None

    def _flush(self) -> None:
        """Write the pending lines. A failed write keeps the whole lines that reached the disk,
        cuts off a torn last one and leaves the rest pending, `blocked` with the reason."""
        assert self._fd is not None
        if not self._pending:
            self.blocked = None
            return
        data = memoryview(b"".join(self._pending))
        reached = 0
        try:
            while data:
                written = os.write(self._fd, data)
                reached += written
                data = data[written:]
        except OSError as exc:
            self.blocked = f"cannot write spill file {self.path}: {_reason(exc)}"
        whole, kept = 0, 0
        for line in self._pending:
            if kept + len(line) > reached:
                break
            kept += len(line)
            whole += 1
        if reached > kept:  # a torn line: the file ends with whole lines only
            try:
                os.ftruncate(self._fd, self._size + kept)
            except OSError as exc:
                raise SpillError(f"cannot cut spill file {self.path}: {_reason(exc)}") from None
        self._size += kept
        del self._pending[:whole]
        self._pending_bytes -= kept
        if not self._pending:
            self.blocked = None

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
        return _parse(line, self.path)

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

    If the spill file cannot be written (full disk), nothing it holds is lost: its lines stay on
    disk, the events not written stay in memory, and new ones join them up to `memory_events`;
    beyond that the newest are dropped (counted, logged once per interval), as they are the only
    ones that could not be stored. Free space is looked at every SPILL_PROBE_S (by `clock`), and
    before any event is dropped, and the file written as soon as there is room (a write that still
    fails backs off, SPILL_RETRY_MIN_S doubling to SPILL_RETRY_MAX_S): one ERROR when it began, one
    INFO when it works again. If the file cannot be read back (truncated or replaced by
    something else) the events on disk are lost, counted with one ERROR line; those in memory are
    kept and the file tried again the same way.
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
    _spill_retry_delay: float = field(init=False, default=SPILL_RETRY_MIN_S)
    _spill_probe_at: float = field(init=False, default=0.0)
    _spill_lost_since_block: int = field(init=False, default=0)

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
        while self.events_buffered >= self.settings.event_buffer and self._drop_oldest_event():
            pass
        event = PendingEvent(
            self._next_seq, camera, message_type, message_id, payload, self.clock(), capture_ts, state
        )
        self._next_seq += 1
        if not self._spill_event(event):
            self._events.append(event)
        self.high_water_events = max(self.high_water_events, self.events_buffered)

    def _spill_waiting(self) -> bool:
        """The spill file failed (or cannot be written) and it is not yet time to try again."""
        return self._spill_retry_at is not None and self.clock() < self._spill_retry_at

    def _spill_event(self, event: PendingEvent) -> bool:
        """Put the event in the spill lane if it belongs there (True: taken, or dropped and
        counted when the file cannot be written and the memory budget is spent); False: memory."""
        spill = self._spill
        if spill is None or not (spill.count or len(self._events) >= self.settings.memory_events):
            return False
        if self._spill_retry_at is not None and spill.blocked is None:  # failed: memory until due
            if self._spill_waiting():
                return False
            self._spill_retry_at = None
            self.drops.log.info("%s: spill file %s is used again", self.drops.sink, spill.path)
        if spill.blocked is not None:
            self.retry_spill(urgent=spill.unwritten >= self.settings.memory_events)
        if spill.blocked is not None and spill.unwritten >= self.settings.memory_events:
            self._spill_lost_since_block += 1
            self.drops.note(DROP_SPILL_FULL)  # the newest: the only ones that could not be stored
            return True
        was_blocked = spill.blocked is not None
        try:
            spill.append(event)
        except SpillError as exc:
            self._spill_failed(exc)
            return False
        if spill.blocked is not None and not was_blocked:
            self._spill_blocked(spill.blocked)
        return True

    def retry_spill(self, urgent: bool = False) -> None:
        """While the spill file cannot be written: look at the free space (every SPILL_PROBE_S,
        or now when `urgent`: an event would be dropped) and, if there is room, write what waits
        in memory. Called at each event and as the sink delivers."""
        spill = self._spill
        if spill is None or spill.blocked is None or self._spill_waiting():
            return
        now = self.clock()
        if not urgent and now < self._spill_probe_at:
            return
        self._spill_probe_at = now + SPILL_PROBE_S
        try:
            free = shutil.disk_usage(spill.path.parent).free
        except OSError:
            free = None  # cannot tell: try the write itself
        if free is not None and free < spill.unwritten_bytes + SPILL_ROOM:
            return  # no room yet
        try:
            written = spill.retry()
        except SpillError as exc:
            self._spill_failed(exc)
            return
        if written:
            self.drops.log.info(
                "%s: spill file %s written again: %d events on disk, %d dropped meanwhile",
                self.drops.sink, spill.path, spill.count, self._spill_lost_since_block,
            )
            self._spill_retry_at = None
            self._spill_retry_delay = SPILL_RETRY_MIN_S
            return
        self._spill_retry_at = self.clock() + self._spill_retry_delay  # room, but it failed
        self._spill_retry_delay = min(SPILL_RETRY_MAX_S, self._spill_retry_delay * 2)

    def _spill_blocked(self, reason: str) -> None:
        """The file took what it could: nothing is lost; said once, with what happens next."""
        assert self._spill is not None
        self._spill_lost_since_block = 0
        self._spill_retry_delay = SPILL_RETRY_MIN_S
        self._spill_probe_at = self.clock() + SPILL_PROBE_S  # written once the free space allows
        self.drops.log.error(
            "%s: %s; nothing it holds is lost: %d events on disk are kept, %d wait in memory "
            "(new ones too, up to %d; beyond that the newest are dropped, counted); it is written "
            "again as soon as there is room",
            self.drops.sink, reason, self._spill.count - self._spill.unwritten,
            self._spill.unwritten, self.settings.memory_events,
        )

    def _spill_failed(self, exc: SpillError) -> None:
        """The file cannot be read back: what it held on disk is lost (counted, one ERROR); the
        events in memory are kept, and the file tried again after a short backoff."""
        assert self._spill is not None
        kept = self._spill.take_pending()
        self._events.extend(kept)
        lost = self._spill.count
        self._spill.discard()
        self.drops.note(DROP_SPILL_FAILED, lost, reported_elsewhere=True)
        already_failed = self._spill_retry_at is not None
        self._spill_retry_at = self.clock() + self._spill_retry_delay
        self._spill_retry_delay = min(SPILL_RETRY_MAX_S, self._spill_retry_delay * 2)
        if already_failed:
            self.drops.log.debug("%s: %s (still)", self.drops.sink, exc)
            return
        self.drops.log.error(
            "%s: %s; %d spilled events dropped, %d kept in memory; the spill file is tried again "
            "shortly", self.drops.sink, exc, lost, len(kept),
        )

    def peek_events(self, limit: int) -> list[PendingEvent]:
        """The oldest events, in order, still held until `ack_events`."""
        self.retry_spill()
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
            self._events.extend(exc.salvaged)  # older than those the file still held in memory
            self._spill_failed(exc)
            return
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
