"""Delivery promises against real brokers (mosquitto, redis-server), each test run for both.

- a broker restart in the middle of a run (Redis: killed outright) loses no lifecycle/identity
  event, and order holds;
- a broker unreachable at start is reported once, retried, and what was buffered (also on disk)
  arrives once it is up;
- a refused password is one clear error line, in the log and in `streamer check`;
- a stalled consumer, or a frozen broker, never blocks the publishing side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamer.assembly import default_assembly
from streamer.check import check_brokers
from streamer.config import CameraConfig, PublishingConfig, StreamerConfig
from streamer.publishing.broker import BrokerSink
from streamer.publishing.buffer import DROP_FRAME_BUFFER_FULL
from streamer.publishing.mqtt import MqttSink
from tests.publishing.conftest import HarnessFactory
from tests.publishing.harness import Harness
from tests.publishing.support import SyntheticCamera, dedupe, drain, validate, wait_until

pytestmark = pytest.mark.timeout(60)

CAMERAS = ["cam1", "cam2"]
IDENTITY_EVERY = 4
PACE_S = 0.002
CONNECT_TIMEOUT_S = 10.0


class Producer:
    """Plays the pipeline: frames and events for a few cameras, remembering every event id."""

    def __init__(self, sink: BrokerSink) -> None:
        self.sink = sink
        self.cameras = [SyntheticCamera(name) for name in CAMERAS]
        self.event_ids: dict[str, list[str]] = defaultdict(list)
        self.frames = 0
        self.events_while_disconnected = 0

    async def run(self, frames_per_camera: int, pace_s: float = PACE_S, frames: bool = True) -> None:
        """`frames=False` publishes only the events, so the batch in flight is an event batch."""
        for _ in range(frames_per_camera):
            for camera in self.cameras:
                result, events = camera.step()
                if result.frame_index % IDENTITY_EVERY == 0:
                    events = [*events, camera.identity()]
                if frames:
                    self.sink.publish_frame(result)
                self.sink.publish_events(events)
                self.frames += 1
                self.event_ids[camera.name] += [e.id for e in events]
                if not self.sink.connected:
                    self.events_while_disconnected += len(events)
            await asyncio.sleep(pace_s)


def assert_all_events_in_order(producer: Producer, received: list[dict[str, Any]]) -> None:
    unique = dedupe(received)
    for camera in CAMERAS:
        arrived = [m["id"] for m in unique if m["camera"] == camera]
        expected = producer.event_ids[camera]
        missing = set(expected) - set(arrived)
        assert not missing, f"{camera}: {len(missing)} of {len(expected)} events never arrived"
        assert arrived == expected, f"{camera}: events arrived out of order"
    for message in unique:
        validate(message)


async def test_broker_restart_loses_no_event_and_keeps_order(harness: Harness) -> None:
    sink = harness.make_sink()
    await harness.start_consumer()
    await sink.start()
    await wait_until(lambda: sink.connected, CONNECT_TIMEOUT_S, "first connection")
    producer = Producer(sink)

    await producer.run(20)
    stopping = asyncio.create_task(asyncio.to_thread(harness.broker.stop, harness.outage_is_crash))
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        while sink.connected:  # event batches are in flight while the broker goes down
            await producer.run(1, frames=False)
    await stopping
    await producer.run(20)  # every event of these frames is produced while the broker is down
    await asyncio.to_thread(harness.broker.start)
    await producer.run(20)
    await drain(sink)
    await sink.stop()

    assert producer.events_while_disconnected >= 20 * len(CAMERAS)
    assert sink.errors >= 1  # the lost connection was noticed and counted
    received = await wait_for_lifecycle(harness, producer)
    assert_all_events_in_order(producer, received)


async def wait_for_lifecycle(harness: Harness, producer: Producer) -> list[dict[str, Any]]:
    """The consumer may still be reconnecting after the restart: give it a moment."""
    expected = {i for ids in producer.event_ids.values() for i in ids}
    received: list[dict[str, Any]] = []

    async def arrived() -> bool:
        nonlocal received
        received = await harness.lifecycle_messages(CAMERAS)
        return expected <= {m["id"] for m in received}

    for _ in range(500):
        if await arrived():
            break
        await asyncio.sleep(0.02)
    return received


async def test_unreachable_broker_at_start_is_retried_and_spill_delivered(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.start_consumer()  # its persistent session survives the broker's restart
    await asyncio.to_thread(harness.broker.stop)
    sink = harness.make_sink(delivery={"spill_dir": tmp_path / "spill", "memory_events": 10})
    with caplog.at_level(logging.DEBUG, logger="streamer.publishing"):
        await sink.start()
        producer = Producer(sink)
        await producer.run(30, pace_s=0)
        await wait_until(lambda: sink.failed_connects >= 3, CONNECT_TIMEOUT_S, "retries")
        assert sink.buffer.spilled > 0, "events beyond memory_events should be on disk"
        await asyncio.to_thread(harness.broker.start)
        await drain(sink)
        await sink.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and "cannot connect" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "connection refused" in warnings[0] and "Retrying" in warnings[0]
    assert_all_events_in_order(producer, await wait_for_lifecycle(harness, producer))


def check_config(sink: BrokerSink) -> StreamerConfig:
    key = "mqtt" if isinstance(sink, MqttSink) else "redis"
    publishing = PublishingConfig.model_validate({"jsonl": {"enabled": False},
                                                  key: sink.settings})  # type: ignore[attr-defined]
    return StreamerConfig(cameras=[CameraConfig(name="c", url="c.mp4")], publishing=publishing)


SECRET = "right-Secret-42"
WRONG = "wrong-Secret-99"


@pytest.mark.parametrize("kind", ["mqtt", "redis"])
async def test_refused_password_is_one_clear_error(
    kind: str, harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harness = harness_factory(kind, secret=SECRET)
    username = "streamer" if kind == "mqtt" else None
    sink = harness.make_sink(username=username, password=WRONG)
    with caplog.at_level(logging.DEBUG):
        await sink.start()
        await wait_until(lambda: sink.failed_connects >= 4, CONNECT_TIMEOUT_S, "several retries")
        await sink.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "refused the credentials" in errors[0] and "Fix the username/password" in errors[0]
    assert WRONG not in caplog.text and not sink.connected

    assert not await check_brokers(check_config(sink), default_assembly())
    failed = capsys.readouterr().out.strip().splitlines()
    assert len(failed) == 1 and "FAIL" in failed[0] and "credentials refused" in failed[0], failed
    assert WRONG not in failed[0]

    good = harness.make_sink(username=username, password=SECRET)
    assert await check_brokers(check_config(good), default_assembly())
    assert capsys.readouterr().out.split()[2] == "ok"


async def test_stalled_consumer_never_slows_publishing(harness: Harness) -> None:
    await harness.start_consumer()
    stalled = await harness.stall_a_consumer()
    sink = harness.make_sink()
    await sink.start()
    await wait_until(lambda: sink.connected, CONNECT_TIMEOUT_S, "connection")
    producer = Producer(sink)
    highest_buffered = 0
    for _ in range(40):
        await producer.run(5)
        highest_buffered = max(highest_buffered, sink.buffer.buffered)
    await drain(sink)
    try:
        assert await harness.consumer_is_stalled(stalled), "the stalled consumer must have unread data"
        assert sink.stats().dropped == 0
        assert highest_buffered < sink.delivery.frame_buffer
        for camera in CAMERAS:  # a healthy consumer next to the stalled one got every frame
            assert await wait_for_frames(harness, camera, 200) == 200
        assert_all_events_in_order(producer, await wait_for_lifecycle(harness, producer))
    finally:
        stalled.close()
        await sink.stop()


async def wait_for_frames(harness: Harness, camera: str, expected: int) -> int:
    received = 0
    for _ in range(500):
        received = await harness.frames_received(camera)
        if received >= expected:
            break
        await asyncio.sleep(0.02)
    return received


FROZEN_FRAME_BUFFER = 50
FROZEN_BATCH = 16


async def test_frozen_broker_never_blocks_the_pipeline_side(harness: Harness) -> None:
    await harness.start_consumer()
    sink = harness.make_sink(delivery={"frame_buffer": FROZEN_FRAME_BUFFER, "ack_timeout_s": 30,
                                       "batch_size": FROZEN_BATCH})
    await sink.start()
    await wait_until(lambda: sink.connected, CONNECT_TIMEOUT_S, "connection")
    producer = Producer(sink)
    await producer.run(5)
    await drain(sink)
    sent_before = sink.published

    harness.broker.pause()
    try:
        await producer.run(150, pace_s=0)  # would hang here if publish() waited on the broker
        buffered_frames = len(sink.buffer.frames)
        dropped_frames = sink.drops.total.get(DROP_FRAME_BUFFER_FULL, 0)
    finally:
        harness.broker.resume()
    frames_while_frozen = 150 * len(CAMERAS)
    # bounded, however long the broker is away (one batch may have left just before the freeze)
    assert FROZEN_FRAME_BUFFER - FROZEN_BATCH <= buffered_frames <= FROZEN_FRAME_BUFFER
    assert dropped_frames >= frames_while_frozen - FROZEN_FRAME_BUFFER - FROZEN_BATCH
    await drain(sink)
    await sink.stop()
    events = sum(len(ids) for ids in producer.event_ids.values())
    stats = sink.stats()
    assert stats.published + stats.dropped == producer.frames + events  # nothing lost silently
    assert stats.published > sent_before
    assert_all_events_in_order(producer, await wait_for_lifecycle(harness, producer))


async def test_shutdown_with_the_broker_away_says_what_was_not_delivered(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(harness.broker.stop)
    sink = harness.make_sink(delivery={"stop_timeout_s": 0.3})
    await sink.start()
    producer = Producer(sink)
    await producer.run(5, pace_s=0)
    events = sum(len(ids) for ids in producer.event_ids.values())
    with caplog.at_level(logging.WARNING, logger="streamer.publishing"):
        await sink.stop()
    told = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(told) == 1, told
    assert f"{producer.frames + events} messages ({events} of them events)" in told[0]
    assert sink.stats().dropped == producer.frames + events
