"""The spill file under faults, on real files: a full disk, a file truncated under the service, a
second instance using the same file. Each is counted and told once; nothing raises into the
pipeline; a full disk costs only the newest events, which could not be stored; nothing loops for
ever."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from streamer.publishing.buffer import (
    DROP_SPILL_FAILED,
    DROP_SPILL_FULL,
    SPILL_RETRY_MAX_S,
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
                             spill: Path) -> list[str]:
    """What the file and memory held is delivered, in order (the oldest first); only the newest,
    which could not be stored, are lost and counted; one ERROR naming the file."""
    delivered = drain_ids(buffer)
    assert delivered == ids[: len(delivered)], "nothing older than a delivered event was lost"
    assert len(delivered) > 2 * MEMORY_EVENTS, "the spill file kept what it held"
    assert buffer.drops.total == {DROP_SPILL_FULL: len(ids) - len(delivered)}
    assert len(errors) == 1, errors
    assert str(spill) in errors[0] and "No space left on device" in errors[0], errors[0]
    assert "nothing it holds is lost" in errors[0]
    return delivered


def test_spill_on_a_full_filesystem_keeps_what_it_holds_and_loses_only_the_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tiny_filesystem(tmp_path / "tiny", "64k") as folder:
        clock = FakeClock()
        buffer = make_buffer(folder, clock, memory_events=MEMORY_EVENTS, event_buffer=1000)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            ids = put_large_events(buffer, 200)  # ~200 kB into a 64 kB filesystem
            assert_full_disk_handled(buffer, ids, logged(caplog, logging.ERROR), folder / "spill.jsonl")
            clock.now += SPILL_RETRY_MAX_S  # delivered: the file was emptied, there is room again
            more = put_large_events(buffer, 20, start=200)
            assert buffer.spilled > 0
            assert drain_ids(buffer) == more
        assert any("written again" in m for m in logged(caplog, logging.INFO))
        buffer.close()


def test_spill_on_a_disk_that_fills_up_keeps_what_it_holds_and_writes_it_once_space_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    buffer = make_buffer(tmp_path, clock, memory_events=MEMORY_EVENTS, event_buffer=1000)
    spill = tmp_path / "spill.jsonl"
    disk = FullDisk(spill, monkeypatch, room=10_000)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ids = put_large_events(buffer, 200)
        clock.now += SPILL_RETRY_MAX_S  # a retry that fails again: counted, not logged again
        ids += put_large_events(buffer, 50, start=200)
        assert disk.refused >= 2
        on_disk = spill.stat().st_size
        assert on_disk > 0 and spill.read_bytes().endswith(b"\n"), "whole lines only, torn one cut"
        disk.full = False  # space is back: written at the next retry, within the capped backoff
        clock.now += SPILL_RETRY_MAX_S
        more = put_large_events(buffer, 20, start=250)
        assert spill.stat().st_size > on_disk
        delivered = drain_ids(buffer)
    assert delivered[-len(more):] == more
    kept = delivered[: -len(more)]
    assert kept == ids[: len(kept)] and len(kept) > 2 * MEMORY_EVENTS
    assert buffer.drops.total == {DROP_SPILL_FULL: len(ids) - len(kept)}
    assert len(logged(caplog, logging.ERROR)) == 1
    assert any("written again" in m for m in logged(caplog, logging.INFO))


def test_spill_truncated_under_a_running_buffer_loses_only_what_the_file_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = make_buffer(tmp_path, memory_events=3, event_buffer=500)
    spill = tmp_path / "spill.jsonl"
    ids = put_large_events(buffer, 100)  # 3 in memory, some 64 kB written, the rest in memory
    first = buffer.peek_events(3)
    buffer.ack_events(first[-1].seq)
    assert [e.message_id for e in buffer.peek_events(3)] == ids[3:6]  # read back from the file
    assert buffer._spill is not None
    unread_on_disk = buffer.spilled - buffer._spill.unwritten
    assert spill.stat().st_size > 0 and unread_on_disk > 0
    os.truncate(spill, spill.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        delivered = drain_ids(buffer)
        assert buffer.events_buffered == 0
        assert buffer.drop_everything() == 0
        later = put_events(buffer, 3, start=100)  # memory still works
        assert drain_ids(buffer) == later
    lost = buffer.drops.total[DROP_SPILL_FAILED]
    assert buffer.drops.total == {DROP_SPILL_FAILED: lost} and 0 < lost <= unread_on_disk
    assert delivered == [i for i in ids[3:] if i in set(delivered)], "in order"
    assert len(delivered) == len(ids) - 3 - lost, "those held in memory are kept"
    assert delivered[-1] == ids[-1]
    errors = logged(caplog, logging.ERROR)
    assert len(errors) == 1 and str(spill) in errors[0] and "truncated" in errors[0], errors


async def test_sink_on_a_full_filesystem_delivers_what_the_file_and_memory_hold(
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
    assert received == produced[: len(received)], "the oldest kept, in order"
    assert len(received) > 2 * 20, "more than memory alone: what the file held"
    assert sink.stats().dropped == len(produced) - len(received)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0], errors


def test_drop_everything_ends_when_the_spill_file_was_truncated(tmp_path: Path) -> None:
    buffer = make_buffer(tmp_path, memory_events=1, event_buffer=500)
    put_large_events(buffer, 100)  # some 64 kB of them written to the file
    assert len(buffer.peek_events(1)) == 1
    assert (tmp_path / "spill.jsonl").stat().st_size > 0
    os.truncate(tmp_path / "spill.jsonl", 0)
    assert buffer.drop_everything() == 100  # used to read for ever, waiting for the lost ones
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
