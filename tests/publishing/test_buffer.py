"""The delivery buffer's promises, without a broker: bounds, order, re-send, drops that are told."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from streamer.config import BackoffConfig, DeliveryConfig
from streamer.core.backoff import Backoff
from streamer.core.events import (
    Event,
    IdentityEvent,
    LineCrossEvent,
    LineState,
    ZoneEvent,
    ZoneEventType,
    ZoneState,
)
from streamer.publishing.buffer import (
    DROP_EVENT_BUFFER_FULL,
    DROP_EVENT_TOO_OLD,
    DROP_FRAME_BUFFER_FULL,
    DeliveryBuffer,
    DropLog,
    PendingFrame,
)
from tests.publishing.support import SyntheticCamera

log = logging.getLogger("test.buffer")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_buffer(tmp_path: Path | None = None, clock: FakeClock | None = None, **settings: object
                ) -> DeliveryBuffer:
    config = DeliveryConfig.model_validate(settings)
    drops = DropLog("test", config.log_interval_s, log)
    spill = tmp_path / "spill.jsonl" if tmp_path is not None else None
    buffer = DeliveryBuffer(config, drops, spill_path=spill, clock=clock or FakeClock())
    buffer.open()
    return buffer


def put_events(buffer: DeliveryBuffer, count: int, start: int = 0) -> list[str]:
    ids = [f"e{i}" for i in range(start, start + count)]
    for message_id in ids:
        buffer.put_event("cam", "new", message_id, "{}", 1.0)
    return ids


def drain_ids(buffer: DeliveryBuffer, batch: int = 4) -> list[str]:
    delivered = []
    while events := buffer.peek_events(batch):
        delivered += [e.message_id for e in events]
        buffer.ack_events(events[-1].seq)
    return delivered


@pytest.mark.parametrize(("capacity", "produced", "kept"), [(5, 3, 3), (5, 5, 5), (5, 12, 5)])
def test_frame_ring_keeps_the_newest_and_counts_the_rest(capacity: int, produced: int, kept: int) -> None:
    buffer = make_buffer(frame_buffer=capacity)
    for index in range(produced):
        buffer.put_frame(PendingFrame("cam", float(index), {"frame_index": index}))
    frames = buffer.take_frames(100)
    assert [f.message["frame_index"] for f in frames] == list(range(produced - kept, produced))
    assert buffer.drops.total.get(DROP_FRAME_BUFFER_FULL, 0) == produced - kept


def test_unacknowledged_events_are_offered_again_in_order() -> None:
    buffer = make_buffer()
    ids = put_events(buffer, 6)
    first = buffer.peek_events(4)
    # the connection broke before the acknowledgement: nothing may be lost or reordered
    again = buffer.peek_events(4)
    assert [e.message_id for e in again] == [e.message_id for e in first] == ids[:4]
    buffer.ack_events(again[1].seq)
    assert drain_ids(buffer) == ids[2:]


def test_full_event_buffer_drops_oldest_and_logs_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = make_buffer(event_buffer=10, log_interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.buffer"):
        ids = put_events(buffer, 25)
    assert drain_ids(buffer) == ids[-10:]
    assert buffer.drops.total == {DROP_EVENT_BUFFER_FULL: 15}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "dropped 1 events (buffer full)" in warnings[0].getMessage()


def test_unreported_drops_are_logged_when_forced(caplog: pytest.LogCaptureFixture) -> None:
    buffer = make_buffer(event_buffer=2, log_interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.buffer"):
        put_events(buffer, 7)
        buffer.drops.report_if_due(force=True)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["test: dropped 1 events (buffer full)", "test: dropped 4 events (buffer full)"]


def test_events_beyond_memory_spill_to_disk_and_come_back_in_order(tmp_path: Path) -> None:
    buffer = make_buffer(tmp_path, memory_events=3, event_buffer=50)
    ids = put_events(buffer, 20)
    spill = tmp_path / "spill.jsonl"
    assert (buffer.spilled, buffer.events_buffered) == (17, 20)
    assert drain_ids(buffer, batch=2) == ids
    assert buffer.events_buffered == 0
    more = put_events(buffer, 5, start=20)  # the emptied spill file is reused
    assert drain_ids(buffer) == more
    buffer.close()
    assert not spill.exists()


def test_spilled_events_keep_what_the_sinks_route_on(tmp_path: Path) -> None:
    """The retained state and capture time come back from disk typed and exact."""
    buffer = make_buffer(tmp_path, memory_events=1, event_buffer=50)
    identity = SyntheticCamera("cam").identity(dim=16)  # numpy scalars, float32 embedding
    events: list[Event] = [
        ZoneEvent(ZoneEventType.ENTER, "cam", "bay", 1, 5, 1.25, occupancy=2),
        LineCrossEvent("cam", "door", "in", 1, 6, 2.5, counts={"in": 3, "out": 1}),
        identity,
    ]
    for event in events:
        buffer.put_event(event.camera, str(event.type), event.id, "{}", event.capture_ts,
                         event.retained_state())
    assert buffer.spilled == 2
    delivered = []
    while pending := buffer.peek_events(1):
        delivered += pending
        buffer.ack_events(pending[-1].seq)
    assert [e.capture_ts for e in delivered] == [1.25, 2.5, identity.capture_ts]
    zone, line, restored = (e.state for e in delivered)
    assert zone == ZoneState("cam", "bay", 2, 1.25, events[0].id)
    assert line == LineState("cam", "door", {"in": 3, "out": 1}, 2.5, events[1].id, crossed="in")
    assert isinstance(restored, IdentityEvent)
    assert restored.embedding.dtype == identity.embedding.dtype
    np.testing.assert_array_equal(restored.embedding, identity.embedding)
    assert dataclasses.replace(restored, embedding=identity.embedding) == identity


def test_spill_respects_the_total_bound(tmp_path: Path) -> None:
    buffer = make_buffer(tmp_path, memory_events=2, event_buffer=6)
    ids = put_events(buffer, 15)
    assert drain_ids(buffer) == ids[-6:]
    assert buffer.drops.total == {DROP_EVENT_BUFFER_FULL: 9}


def test_events_older_than_the_age_limit_are_dropped_and_counted() -> None:
    clock = FakeClock()
    buffer = make_buffer(clock=clock, max_event_age_s=60)
    stale = put_events(buffer, 3)
    clock.now += 61
    fresh = put_events(buffer, 2, start=3)
    assert drain_ids(buffer) == fresh
    assert buffer.drops.total == {DROP_EVENT_TOO_OLD: len(stale)}


@pytest.mark.parametrize(
    ("initial", "maximum", "expected"),
    [(0.5, 30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]), (1.0, 1.5, [1.0, 1.5, 1.5])],
)
def test_backoff_grows_and_is_capped(initial: float, maximum: float, expected: list[float]) -> None:
    backoff = Backoff(BackoffConfig(initial_delay_s=initial, max_delay_s=maximum))
    assert [backoff.next_delay() for _ in expected] == expected
    backoff.reset()
    assert backoff.next_delay() == initial
