"""The pipeline: owns Triton, the cameras, the per-camera tasks and the sinks, and stops them in order.

The path of a frame: sources/ (decode thread -> latest-frame slot) -> inference/ (shared queue ->
Triton) -> tracking/ -> extra stages (faces, ReID) -> publishing/ sinks, with metrics observing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.config import CameraConfig, StreamerConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame, FrameResult
from streamer.core.redaction import redact_url
from streamer.core.stages import FrameStage
from streamer.core.stats import CameraStats, StatsRegistry
from streamer.inference.client import InferenceError
from streamer.inference.detector import PersonDetector
from streamer.inference.triton import TritonConnection
from streamer.publishing.base import Sink
from streamer.sources.camera import CameraSource, CameraStatus
from streamer.tracking.camera_tracker import CameraTracker

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 10.0


class ResultObserver(Protocol):
    def observe(self, result: FrameResult) -> None: ...


@dataclass
class CameraRuntime:
    config: CameraConfig
    source: CameraSource
    stats: CameraStats
    tracker: CameraTracker | None = None
    task: asyncio.Task[None] | None = None
    last_error_logged: float = field(default=-float("inf"))


class Pipeline:
    """Start with `start()`, wait with `wait()`, end with `stop()`; safe to stop at any point."""

    def __init__(
        self,
        config: StreamerConfig,
        *,
        sinks: list[Sink] | None = None,
        stages: list[FrameStage] | None = None,
        observers: list[ResultObserver] | None = None,
        keep_images: Callable[[str], bool] | None = None,
        registry: StatsRegistry | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else StatsRegistry()
        self.sinks = sinks or []
        self.stages = stages or []
        self.observers = observers or []
        self.keep_images = keep_images
        models = [config.detector.model, *(m for stage in self.stages for m in stage.models)]
        self.triton = TritonConnection(config, list(dict.fromkeys(models)), self.registry)
        self.detector: PersonDetector | None = None
        self.cameras: dict[str, CameraRuntime] = {}
        self.started_monotonic = 0.0
        self._stopping = False

    async def start(self) -> None:
        self.started_monotonic = time.monotonic()
        try:
            await self.triton.start()
            model = self.triton.models[self.config.detector.model]
            assert model.spec is not None
            self.detector = PersonDetector(model, self.config.detector)
            self.detector.configure(model.spec)
            for stage in self.stages:
                await stage.start(self.triton.models)
                counters = getattr(stage, "counters", None)
                if counters is not None:
                    self.registry.register("stage", stage.name, counters)
            names: dict[str, int] = {}
            for sink in self.sinks:
                await sink.start()
                names[sink.name] = names.get(sink.name, 0) + 1
                unique = sink.name if names[sink.name] == 1 else f"{sink.name}#{names[sink.name]}"
                self.registry.register("sink", unique, sink.stats)
        except BaseException:
            await self.stop()
            raise
        for camera in self.config.enabled_cameras:
            stats = CameraStats(camera.name, redact_url(camera.url))
            self.registry.register("camera", camera.name, stats)
            source = CameraSource(
                camera,
                prepare=self.detector.prepare,
                on_status=self._camera_status_changed,
                stats=stats,
            )
            runtime = CameraRuntime(config=camera, source=source, stats=stats)
            self.cameras[camera.name] = runtime
            source.start()
            runtime.task = asyncio.create_task(self._run_camera(runtime), name=f"camera:{camera.name}")
        log.info("pipeline started: %d cameras", len(self.cameras))

    async def wait(self) -> None:
        """Return when every camera has finished (files without loop) or the pipeline stopped."""
        tasks = [r.task for r in self.cameras.values() if r.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        await asyncio.gather(*(r.source.stop() for r in self.cameras.values()))
        for runtime in self.cameras.values():
            if runtime.task is not None and not runtime.task.done():
                runtime.task.cancel()
        await asyncio.gather(
            *(r.task for r in self.cameras.values() if r.task is not None), return_exceptions=True
        )
        for sink in self.sinks:
            try:
                await sink.stop()
            except Exception:
                log.exception("sink %s failed to stop cleanly", sink.name)
        await self.triton.stop()
        log.info("pipeline stopped")

    def _camera_status_changed(self, camera: str, status: CameraStatus, detail: str | None) -> None:
        log.info("camera %s: %s%s", camera, status.value, f" ({detail})" if detail else "")
        for sink in self.sinks:
            try:
                sink.publish_camera_status(camera, status.value, detail)
            except Exception:
                log.exception("sink %s rejected a camera status", sink.name)

    async def _run_camera(self, runtime: CameraRuntime) -> None:
        """One camera's loop; an error here is logged and never reaches another camera."""
        name = runtime.config.name
        last_capture_ts = time.time()
        depth = self.config.inference.frames_in_flight_per_camera
        # Up to `depth` frames of this camera are in inference at once, so one frame's round trip
        # overlaps the next; results still reach the tracker strictly in frame order.
        in_flight: deque[tuple[Frame, asyncio.Task[Detections | None]]] = deque()
        next_frame: asyncio.Task[Frame | None] | None = None
        source_ended = False
        try:
            while True:
                if next_frame is None and not source_ended and len(in_flight) < depth:
                    next_frame = asyncio.create_task(runtime.source.next_frame())
                waiting: set[asyncio.Task[Any]] = {next_frame} if next_frame is not None else set()
                if in_flight:
                    waiting.add(in_flight[0][1])
                if not waiting:
                    break
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if next_frame is not None and next_frame.done():
                    frame = next_frame.result()
                    next_frame = None
                    if frame is None:
                        source_ended = True
                    else:
                        last_capture_ts = frame.capture_ts
                        in_flight.append((frame, asyncio.create_task(self._detect(runtime, frame))))
                while in_flight and in_flight[0][1].done():
                    frame, detection = in_flight.popleft()
                    detections = detection.result()
                    if detections is not None:
                        self._deliver(await self._conclude(runtime, frame, detections))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("camera %s: processing failed; camera stopped", name)
        finally:
            for task in [next_frame, *(task for _frame, task in in_flight)]:
                if task is not None:
                    task.cancel()
            if runtime.tracker is not None and runtime.tracker.states:
                events = runtime.tracker.finish(last_capture_ts)
                self._deliver_events(events)
            for stage in self.stages:
                with contextlib.suppress(Exception):
                    stage.forget_camera(name)

    async def _detect(self, runtime: CameraRuntime, frame: Frame) -> Detections | None:
        """Person detection; a failed request skips this frame only (counted, logged sparingly)."""
        assert self.detector is not None
        counters = runtime.stats
        in_camera_thread_s = sum(frame.timings.seconds.values())  # decode, preprocess
        frame.timings.add("wait", max(0.0, frame.age_s() - in_camera_thread_s))
        try:
            return await self.detector.detect(frame)
        except InferenceError as exc:
            counters.inference_errors += 1
            now = time.monotonic()
            if now - runtime.last_error_logged >= ERROR_LOG_INTERVAL_S:
                runtime.last_error_logged = now
                log.warning(
                    "camera %s: inference failed (%d so far): %s",
                    runtime.config.name, counters.inference_errors, exc,
                )
            return None

    async def _conclude(
        self, runtime: CameraRuntime, frame: Frame, detections: Detections
    ) -> FrameResult:
        """Tracking and the later stages, in frame order."""
        counters = runtime.stats
        if runtime.tracker is None:
            runtime.tracker = CameraTracker(
                runtime.config.name,
                self.config.tracker,
                runtime.config.max_fps or runtime.stats.source_fps,
            )
        started = time.perf_counter()
        tracks, events = runtime.tracker.update(frame, detections)
        frame.timings.add("track", time.perf_counter() - started)
        result = FrameResult(
            camera=frame.camera,
            frame_index=frame.index,
            capture_ts=frame.capture_ts,
            width=frame.width,
            height=frame.height,
            tracks=tracks,
            latency_s=0.0,
            timings=frame.timings.seconds,
            events=events,
        )
        for stage in self.stages:
            started = time.perf_counter()
            try:
                await stage.process(frame, result, runtime.tracker)
            except InferenceError as exc:
                counters.inference_errors += 1
                log.debug("camera %s: stage %s skipped: %s", frame.camera, stage.name, exc)
            frame.timings.add(stage.name, time.perf_counter() - started)
        if self.keep_images is not None and self.keep_images(frame.camera):
            result.image = frame.image
        result.latency_s = frame.age_s()
        counters.processed += 1
        counters.last_latency_s = result.latency_s
        counters.last_result_monotonic = time.monotonic()
        return result

    def _deliver(self, result: FrameResult) -> None:
        """Hand the result to every sink, then let observers (metrics) see it, publish included."""
        started = time.perf_counter()
        for sink in self.sinks:
            try:
                sink.publish(result)
            except Exception:
                log.exception("sink %s rejected a result", sink.name)
        self._deliver_events(result.events)
        result.timings["publish"] = time.perf_counter() - started
        for observer in self.observers:
            try:
                observer.observe(result)
            except Exception:
                log.exception("observer failed")

    def _deliver_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for sink in self.sinks:
            try:
                sink.publish_events(events)
            except Exception:
                log.exception("sink %s rejected events", sink.name)
