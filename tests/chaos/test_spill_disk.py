"""The broker is down and the spill file's disk fills up (issue 25, finding 5), on a real tmpfs
with a real Redis: nothing the spill file holds is lost, only the newest events that could not be
stored (counted); the file is written again within seconds of space coming back, and once the
broker returns everything held is delivered, in order."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.chaos.test_full_disk import fill
from tests.publishing.faults import tiny_filesystem
from tests.publishing.harness import RedisHarness
from tests.publishing.support import SyntheticCamera, drain

MEMORY_EVENTS = 20
REWRITE_LIMIT_S = 5.0  # the file used to be tried again only after a fixed 60 s


def publish(sink: object, camera: SyntheticCamera, steps: int) -> list[str]:
    produced = []
    for _ in range(steps):
        _result, events = camera.step()
        sink.publish_events(events)  # type: ignore[attr-defined]
        produced += [e.id for e in events]
    return produced


async def test_a_full_disk_under_the_spill_file_loses_only_what_could_not_be_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness = RedisHarness(tmp_path / "redis")
    harness.broker.start()
    try:
        await asyncio.to_thread(harness.broker.stop, True)  # an outage: events pile up and spill
        with tiny_filesystem(tmp_path / "spill", "512k") as folder, caplog.at_level(logging.INFO):
            sink = harness.make_sink(delivery={"spill_dir": folder, "memory_events": MEMORY_EVENTS})
            await sink.start()
            camera = SyntheticCamera("cam")
            before_full = publish(sink, camera, 300)  # written to the spill file
            assert sink.buffer.spilled > MEMORY_EVENTS
            filler = fill(folder)
            while_full = publish(sink, camera, 400)  # the file takes no more
            dropped_while_full = sink.stats().dropped
            assert dropped_while_full > 0

            filler.unlink()
            freed = time.time()
            after: list[str] = []
            while not any("written again:" in r.getMessage() for r in caplog.records):
                assert time.time() - freed < REWRITE_LIMIT_S, "the spill file not written again"
                after += publish(sink, camera, 1)
                await asyncio.sleep(0.05)
            rewritten_after_s = time.time() - freed
            after += publish(sink, camera, 200)  # written to the file again

            await asyncio.to_thread(harness.broker.start)
            await drain(sink, timeout_s=30.0)
            await sink.stop()
        received = [m["id"] for m in await harness.lifecycle_messages(["cam"])]
    finally:
        harness.broker.stop()

    produced = before_full + while_full + after
    assert received[: len(before_full)] == before_full, "everything the file held is delivered"
    assert received == [i for i in produced if i in set(received)], "in order"
    assert set(after) <= set(received), "nothing lost once space was back"
    lost = set(produced) - set(received)
    assert lost <= set(while_full) and len(lost) == sink.stats().dropped == dropped_while_full
    assert rewritten_after_s < REWRITE_LIMIT_S
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
