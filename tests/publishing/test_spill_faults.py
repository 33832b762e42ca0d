"""The spill file under faults, on real files: a full disk, a file truncated under the service, a
second instance using the same file. Each is counted and told once; nothing raises into the
pipeline; in-memory events keep flowing; nothing loops for ever."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from streamer.publishing.buffer import (
    DROP_EVENT_BUFFER_FULL,
    DROP_SPILL_FAILED,
    SPILL_RETRY_S,
    DeliveryBuffer,
    SpillLockedError,
)
from streamer.publishing.redis_sink import RedisSink
from tests.publishing.conftest import HarnessFactory
from tests.publishing.faults import FullDisk, tiny_filesystem
from tests.publishing.harness import RedisHarness, redis_settings
from tests.publishing.support import SyntheticCamera, drain
from tests.publishing.test_buffer import FakeClock, drain_ids, make_buffer, put_events

pytestmark = pytest.mark.timeout(20)  # a drain loop that never ends fails here, not in CI's limit

LOGGER = "test.buffer"
PAYLOAD = '{"pad": "' + "x" * 1000 + '"}'  # ~1 kB per spilled line: 64 kB fill up quickly
MEMORY_EVENTS = 5


def put_large_events(buffer: DeliveryBuffer, count: int, start: int = 0) -> list[str]:
    ids = [f"e{i}" for i in range(start, start + count)]
    for message_id in ids:
        buffer.put_event("cam", "new", message_id, PAYLOAD, 1.0)
    return ids


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def assert_full_disk_handled(buffer: DeliveryBuffer, ids: list[str], errors: list[str],
                             spill: Path) -> None:
    """Newest events delivered from memory, every other one counted, one ERROR naming the file."""
    delivered = drain_ids(buffer)
    assert delivered == ids[-MEMORY_EVENTS:]
    assert sum(buffer.drops.total.values()) == len(ids) - len(delivered)
    assert buffer.drops.total[DROP_SPILL_FAILED] > 0
    assert len(errors) == 1, errors
    assert str(spill) in errors[0] and "No space left on device" in errors[0], errors[0]
    assert spill.stat().st_size == 0, "the failed spill file should be emptied to free the disk"


def test_spill_on_a_full_filesystem_counts_drops_and_memory_events_flow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tiny_filesystem(tmp_path / "tiny", "64k") as folder:
        clock = FakeClock()
        buffer = make_buffer(folder, clock, memory_events=MEMORY_EVENTS, event_buffer=1000)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            ids = put_large_events(buffer, 200)  # ~200 kB into a 64 kB filesystem
            assert_full_disk_handled(buffer, ids, logged(caplog, logging.ERROR), folder / "spill.jsonl")
            clock.now += SPILL_RETRY_S  # the space was freed: the file works again
            more = put_large_events(buffer, 20, start=200)
            assert buffer.spilled > 0
            assert drain_ids(buffer) == more
        assert any("works again" in m for m in logged(caplog, logging.INFO))
        buffer.close()


def test_spill_on_a_disk_that_fills_up_counts_drops_once_and_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    buffer = make_buffer(tmp_path, clock, memory_events=MEMORY_EVENTS, event_buffer=1000)
    disk = FullDisk(tmp_path / "spill.jsonl", monkeypatch, room=10_000)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ids = put_large_events(buffer, 200)
        clock.now += SPILL_RETRY_S  # a retry that fails again: counted, not logged at ERROR again
        ids += put_large_events(buffer, 50, start=200)
        assert disk.refused >= 2
        assert_full_disk_handled(buffer, ids, logged(caplog, logging.ERROR), tmp_path / "spill.jsonl")
        disk.full = False
        clock.now += SPILL_RETRY_S
        more = put_large_events(buffer, 20, start=250)
        assert drain_ids(buffer) == more
    assert any("works again" in m for m in logged(caplog, logging.INFO))
    assert buffer.drops.total.get(DROP_EVENT_BUFFER_FULL, 0) > 0  # memory only: oldest dropped


@pytest.mark.parametrize("keep", ["nothing", "half a line"])
def test_spill_truncated_under_a_running_buffer_counts_drops_and_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keep: str
) -> None:
    buffer = make_buffer(tmp_path, memory_events=3, event_buffer=100)
    spill = tmp_path / "spill.jsonl"
    ids = put_large_events(buffer, 20)  # 3 in memory, 17 kB in the spill file: beyond read-ahead
    first = buffer.peek_events(3)
    buffer.ack_events(first[-1].seq)
    assert [e.message_id for e in buffer.peek_events(3)] == ids[3:6]  # read back: 14 left on disk
    assert spill.stat().st_size > 0 and buffer.spilled == 14
    os.truncate(spill, 0 if keep == "nothing" else spill.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert drain_ids(buffer) == ids[3:6]
        assert buffer.events_buffered == 0
        assert buffer.drop_everything() == 0
        later = put_events(buffer, 3, start=20)  # memory still works (memory_events of them)
        assert drain_ids(buffer) == later
    assert buffer.drops.total == {DROP_SPILL_FAILED: 14}
    errors = logged(caplog, logging.ERROR)
    assert len(errors) == 1 and str(spill) in errors[0] and "truncated" in errors[0], errors


async def test_sink_on_a_full_filesystem_delivers_what_memory_holds(
    tmp_path: Path, harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harness = harness_factory("redis")
    assert isinstance(harness, RedisHarness)
    await asyncio.to_thread(harness.broker.stop, True)  # an outage: events pile up and spill
    with tiny_filesystem(tmp_path / "tiny", "64k") as folder, caplog.at_level(logging.WARNING):
        sink = harness.make_sink(delivery={"spill_dir": folder, "memory_events": 20})
        await sink.start()
        camera, produced = SyntheticCamera("cam"), []
        for _ in range(400):  # some 200 kB of events for a 64 kB filesystem
            _result, events = camera.step()
            sink.publish_events(events)
            produced += [e.id for e in events]
        await asyncio.to_thread(harness.broker.start)
        await drain(sink)
        await sink.stop()
    received = [m["id"] for m in await harness.lifecycle_messages(["cam"])]
    assert received == produced[-20:]
    assert sink.stats().dropped == len(produced) - len(received)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0], errors


def test_drop_everything_ends_when_the_spill_file_was_truncated(tmp_path: Path) -> None:
    buffer = make_buffer(tmp_path, memory_events=1, event_buffer=100)
    put_large_events(buffer, 30)
    assert len(buffer.peek_events(1)) == 1  # reading back wrote the other 29 to the file
    os.truncate(tmp_path / "spill.jsonl", 0)
    assert buffer.drop_everything() == 30  # used to read for ever, waiting for the lost 29
    assert buffer.events_buffered == 0


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable_redis_sink(spill_dir: Path, **delivery: object) -> RedisSink:
    """A sink whose broker never answers, so everything published stays buffered."""
    settings = redis_settings(unused_port(), delivery={"spill_dir": spill_dir, **delivery})
    return RedisSink(settings)


async def test_sink_stop_with_a_truncated_spill_file_ends_and_counts(tmp_path: Path) -> None:
    sink = unreachable_redis_sink(tmp_path, memory_events=10, stop_timeout_s=0.2)
    await sink.start()
    camera = SyntheticCamera("cam")
    for _ in range(400):  # well over 64 kB of events: most of them are written to the file
        _result, events = camera.step()
        sink.publish_events(events)
    spill = next(tmp_path.glob("*-events.jsonl"))
    assert spill.stat().st_size > 0
    buffered = sink.buffer.events_buffered
    os.truncate(spill, 0)
    await sink.stop()
    assert sink.stats().dropped == buffered
    assert not spill.exists()


def test_second_buffer_on_the_same_spill_file_is_refused(tmp_path: Path) -> None:
    first = make_buffer(tmp_path, memory_events=2, event_buffer=100)
    ids = put_events(first, 10)
    first.peek_events(2)  # the spilled events are now in the file
    with pytest.raises(SpillLockedError) as refused:
        make_buffer(tmp_path)
    message = str(refused.value)
    assert str(tmp_path / "spill.jsonl") in message and "another streamer instance" in message
    assert "\n" not in message
    assert drain_ids(first) == ids  # the first one's file was left alone
    first.close()
    make_buffer(tmp_path).close()  # the lock went with the first one


async def test_second_sink_on_the_same_spill_dir_refuses_to_start(tmp_path: Path) -> None:
    first = unreachable_redis_sink(tmp_path, memory_events=1, stop_timeout_s=0.1)
    await first.start()
    first.publish_events(SyntheticCamera("cam").step()[1] * 3)
    spill = next(tmp_path.glob("*-events.jsonl"))
    second = unreachable_redis_sink(tmp_path, memory_events=1, stop_timeout_s=0.1)
    with pytest.raises(SpillLockedError, match="another streamer instance"):
        await second.start()
    await second.stop()
    assert spill.exists() and first.buffer.spilled > 0
    await first.stop()
    third = unreachable_redis_sink(tmp_path, stop_timeout_s=0.1)
    await third.start()
    await third.stop()
