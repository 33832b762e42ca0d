"""Publish throughput of the broker sinks against real brokers, without Triton.

`await run_benchmark(mqtt=..., redis=...)` plays `cameras` synthetic cameras as fast as each sink
delivers (never faster than its buffer allows, so nothing is dropped) and reports, per sink:
messages/s delivered, the pipeline-side cost of `publish()` (a frame and its events) per frame (what a
sink adds to every frame on the event loop), and how late a 1 ms timer fires meanwhile (how long
the sink's own work holds the loop the cameras share). Run it under uvloop, like `streamer run`.

The latency the sinks add end to end is measured with the pipeline benchmark instead: the same
8-camera run with and without sinks (see the README's Publishing section).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamer.config import MqttSinkConfig, RedisSinkConfig
from streamer.core.detections import Detections
from streamer.core.events import Event, IdentityEvent, TrackEvent, TrackEventType
from streamer.core.frames import FrameResult
from streamer.publishing.broker import BrokerSink
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink

MS = 1000.0
US = 1_000_000.0


@dataclass(frozen=True)
class BenchmarkShape:
    """What one synthetic frame carries; defaults resemble a busy street camera."""

    cameras: int = 8
    frames_per_camera: int = 1000
    tracks_per_frame: int = 12
    new_tracks_every: int = 3  # frames between a track starting (and an older one ending)
    identity_every: int = 5  # frames between identity events (embedding of `embedding_dim`)
    embedding_dim: int = 512
    timer_period_s: float = 0.001
    connect_timeout_s: float = 10.0
    drain_timeout_s: float = 120.0


@dataclass
class SinkBenchmark:
    sink: str
    endpoint: str
    frames: int
    events: int
    seconds: float
    messages_per_s: float
    frames_per_s: float
    events_per_s: float
    publish_us_per_frame: float
    loop_lag_p50_ms: float
    loop_lag_p99_ms: float
    dropped: int
    errors: int
    notes: list[str] = field(default_factory=list)


def _frame(camera: str, index: int, shape: BenchmarkShape) -> FrameResult:
    count = shape.tracks_per_frame
    boxes = np.tile(np.array([[100, 50, 180, 300]], np.float32), (count, 1)) + index % 50
    tracks = Detections(
        xyxy=boxes,
        confidence=np.full(count, 0.87, np.float32),
        class_id=np.zeros(count, np.int64),
        tracker_id=np.arange(index, index + count, dtype=np.int64),
    )
    return FrameResult(
        camera=camera, frame_index=index, capture_ts=time.time(), width=1920, height=1080,
        tracks=tracks, latency_s=0.04, timings={"wait": 0.001, "infer": 0.03, "track": 0.001},
    )


def _events(camera: str, index: int, shape: BenchmarkShape) -> list[Event]:
    now = time.time()
    events: list[Event] = []
    if index % shape.new_tracks_every == 0:
        snapshot = {"track_id": index, "box": [100.0, 50.0, 180.0, 300.0], "score": 0.9,
                    "first_seen_ts": now, "last_seen_ts": now, "frames": 1}
        events.append(TrackEvent(TrackEventType.NEW, camera, index, index, now, None, snapshot))
        events.append(
            TrackEvent(TrackEventType.END, camera, index - 1, index, now,
                       {**snapshot, "track_id": index - 1}, None)
        )
    if index % shape.identity_every == 0:
        embedding = np.random.default_rng(index).random(shape.embedding_dim, np.float32)
        events.append(IdentityEvent(camera, index, index, now, "reid", embedding, 0.5, 1))
    return events


async def _measure_loop_lag(period_s: float, lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(period_s)
        lags.append(max(0.0, time.perf_counter() - started - period_s))


async def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(0.01)


async def benchmark_sink(sink: BrokerSink, shape: BenchmarkShape) -> SinkBenchmark:
    """Publish `cameras x frames_per_camera` frames with their events; measure until delivered."""
    await sink.start()
    lags: list[float] = []
    stop_timer = asyncio.Event()
    timer: asyncio.Task[None] | None = None
    try:
        await _wait(lambda: sink.connected, shape.connect_timeout_s, f"{sink.name} connection")
        cameras = [f"cam{i}" for i in range(shape.cameras)]
        # Stay below the frame buffer, so the measured rate is the delivered rate, without drops.
        high_water = max(1, sink.delivery.frame_buffer // 2)
        frames = events = 0
        publish_seconds = 0.0
        published_before = sink.published
        timer = asyncio.create_task(_measure_loop_lag(shape.timer_period_s, lags, stop_timer))
        started = time.perf_counter()
        for index in range(shape.frames_per_camera):
            for camera in cameras:
                result = _frame(camera, index, shape)
                new_events = _events(camera, index, shape)
                result.events = new_events
                call_started = time.perf_counter()
                sink.publish(result)
                publish_seconds += time.perf_counter() - call_started
                frames += 1
                events += len(new_events)
            await asyncio.sleep(0)
            while sink.buffer.buffered > high_water:
                await asyncio.sleep(0)
        await _wait(lambda: sink.buffer.buffered == 0, shape.drain_timeout_s, "delivery")
        seconds = time.perf_counter() - started
        delivered = sink.published - published_before
    finally:
        stop_timer.set()
        if timer is not None:
            await timer
        await sink.stop()
    stats = sink.stats()
    lag_ms = np.array(lags or [0.0]) * MS
    return SinkBenchmark(
        sink=sink.name,
        endpoint=sink.endpoint,
        frames=frames,
        events=events,
        seconds=round(seconds, 2),
        messages_per_s=round(delivered / seconds, 1),
        frames_per_s=round(frames / seconds, 1),
        events_per_s=round(events / seconds, 1),
        publish_us_per_frame=round(publish_seconds / frames * US, 1),
        loop_lag_p50_ms=round(float(np.percentile(lag_ms, 50)), 2),
        loop_lag_p99_ms=round(float(np.percentile(lag_ms, 99)), 2),
        dropped=stats.dropped,
        errors=stats.errors,
    )


async def run_benchmark(
    mqtt: MqttSinkConfig | None = None,
    redis: RedisSinkConfig | None = None,
    shape: BenchmarkShape | None = None,
) -> list[SinkBenchmark]:
    """Measure each given sink in turn against its (running) broker; returns one row per sink."""
    shape = shape or BenchmarkShape()
    sinks: list[BrokerSink] = []
    if mqtt is not None:
        sinks.append(MqttSink(mqtt.model_copy(update={"enabled": True})))
    if redis is not None:
        sinks.append(RedisSink(redis.model_copy(update={"enabled": True})))
    return [await benchmark_sink(sink, shape) for sink in sinks]


def format_results(results: list[SinkBenchmark]) -> list[str]:
    lines = [f"  {'sink':<6} {'msg/s':>9} {'frames/s':>9} {'events/s':>9} {'us/frame':>9} "
             f"{'lag p50':>8} {'lag p99':>8} {'dropped':>8}"]
    for r in results:
        lines.append(
            f"  {r.sink:<6} {r.messages_per_s:>9.0f} {r.frames_per_s:>9.0f} {r.events_per_s:>9.0f} "
            f"{r.publish_us_per_frame:>9.1f} {r.loop_lag_p50_ms:>7.2f}ms {r.loop_lag_p99_ms:>7.2f}ms "
            f"{r.dropped:>8}"
        )
    return lines


def as_dicts(results: list[SinkBenchmark]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
