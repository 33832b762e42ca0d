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

Everything here runs on the event loop and never waits: `put_*` is O(1) (a spill write goes to the
file's buffer, flushed only when read back).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from streamer.config import DeliveryConfig

DROP_FRAME_BUFFER_FULL = "frame messages (buffer full)"
DROP_EVENT_BUFFER_FULL = "events (buffer full)"
DROP_EVENT_TOO_OLD = "events (older than max_event_age_s)"
DROP_AT_SHUTDOWN = "messages (not delivered at shutdown)"
DROP_FRAME_SEND_FAILED = "frame messages (connection lost while sending)"


@dataclass(slots=True)
class PendingEvent:
    """One event waiting for the broker's acknowledgement; `seq` orders and acknowledges it."""

    seq: int
    camera: str
    message_type: str  # "new", "update", "end" or "identity"
    message_id: str
    payload: str  # the JSON text, exactly as it will be published
    enqueued_ts: float  # wall clock, so the age limit survives a spill to disk

    def to_line(self) -> str:
        return json.dumps(
            [self.seq, self.camera, self.message_type, self.message_id, self.payload, self.enqueued_ts]
        )

    @classmethod
    def from_line(cls, line: str) -> PendingEvent:
        seq, camera, message_type, message_id, payload, enqueued_ts = json.loads(line)
        return cls(seq, camera, message_type, message_id, payload, enqueued_ts)


@dataclass(slots=True)
class PendingFrame:
    camera: str
    capture_ts: float
    message: dict[str, Any]  # serialised by the sender, so dropped frames cost no encoding


class SpillFile:
    """An append-only file read from the front: the part of the event queue beyond memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._writer: IO[str] | None = None
        self._reader: IO[str] | None = None
        self._dirty = False

    def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - owned until close()
        self._reader = open(self.path, encoding="utf-8")  # noqa: SIM115
        self.count = 0

    def append(self, event: PendingEvent) -> None:
        if self._writer is None:  # publishing before the sink started
            self.open()
        assert self._writer is not None
        self._writer.write(event.to_line() + "\n")
        self._dirty = True
        self.count += 1

    def pop(self, limit: int) -> list[PendingEvent]:
        assert self._writer is not None and self._reader is not None
        if self._dirty:
            self._writer.flush()
            self._dirty = False
        events: list[PendingEvent] = []
        while len(events) < limit and self.count > 0:
            line = self._reader.readline()
            if not line:
                break
            events.append(PendingEvent.from_line(line))
            self.count -= 1
        if self.count == 0:
            self._writer.truncate(0)
            self._writer.seek(0)
            self._reader.seek(0)
        return events

    def close(self) -> None:
        for handle in (self._writer, self._reader):
            if handle is not None:
                handle.close()
        self._writer = self._reader = None
        self.path.unlink(missing_ok=True)


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
    settings: DeliveryConfig
    drops: DropLog
    spill_path: Path | None = None
    clock: Callable[[], float] = time.time
    frames: deque[PendingFrame] = field(init=False)
    _events: deque[PendingEvent] = field(init=False, default_factory=deque)
    _spill: SpillFile | None = field(init=False, default=None)
    _next_seq: int = field(init=False, default=0)
    high_water_events: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.frames = deque()
        if self.spill_path is not None:
            self._spill = SpillFile(self.spill_path)

    def open(self) -> None:
        if self._spill is not None:
            self._spill.open()

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

    def put_event(self, camera: str, message_type: str, message_id: str, payload: str) -> None:
        if self.events_buffered >= self.settings.event_buffer:
            self._drop_oldest_event()
        event = PendingEvent(self._next_seq, camera, message_type, message_id, payload, self.clock())
        self._next_seq += 1
        spill = self._spill
        if spill is not None and (spill.count > 0 or len(self._events) >= self.settings.memory_events):
            spill.append(event)
        else:
            self._events.append(event)
        self.high_water_events = max(self.high_water_events, self.events_buffered)

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
            while self._spill.count:
                self._spill.pop(self.settings.batch_size)
        self.drops.note(DROP_AT_SHUTDOWN, lost, reported_elsewhere=True)
        return lost

    def _refill(self) -> None:
        spill = self._spill
        if spill is not None and spill.count and len(self._events) < self.settings.memory_events:
            self._events.extend(spill.pop(self.settings.memory_events - len(self._events)))

    def _drop_oldest_event(self) -> None:
        if not self._events:
            self._refill()
        if self._events:
            self._events.popleft()
            self.drops.note(DROP_EVENT_BUFFER_FULL)

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
