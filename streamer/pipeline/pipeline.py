"""The pipeline: owns Triton, the cameras, the per-camera tasks and the sinks, and stops them in order.

The path of a frame: a source (decode thread -> latest-frame slot) -> the detector (shared queue ->
Triton) -> tracking/ -> the stages (faces, ReID, zones, event pictures) -> the sinks, with metrics
observing. The pipeline names no concrete component: sources and the detector come from the
factories it is given, stages and sinks are given built (`streamer/assembly.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamer.config import BackoffConfig, CameraConfig, StreamerConfig
from streamer.core.backoff import Backoff
from streamer.core.events import CameraStatusEvent, Event
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import (
    Detector,
    DetectorFactory,
    FrameSource,
    FrameStage,
    Sink,
    SourceFactory,
    SourceHooks,
)
from streamer.core.redaction import redact_url, url_secrets
from streamer.core.stats import (
    CameraState,
    CameraStats,
    PartHealth,
    PartState,
    StatsKind,
    StatsRegistry,
    inference_problems,
)
from streamer.inference.triton import TritonConnection
from streamer.pipeline.camera_loop import CameraLoop
from streamer.pipeline.fanout import SinkFanout
from streamer.pipeline.health import CameraWatchdog
from streamer.publishing.messages import AVAILABLE_DEGRADED, AVAILABLE_ONLINE
from streamer.sources.motion import MotionGate, gated_prepare

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5
# A camera whose processing failed is back within a second; a persistent failure backs off to 5 s.
PROCESSING_BACKOFF = BackoffConfig(initial_delay_s=0.5, max_delay_s=5.0, multiplier=2.0)
PROCESSING_HEALTHY_AFTER_S = 30.0


class PipelineFailed(RuntimeError):
    """The pipeline cannot go on (the inference server stayed down); the message says why."""


class ResultObserver(Protocol):
    def observe(self, result: FrameResult) -> None: ...


@dataclass
class CameraRuntime:
    config: CameraConfig
    source: FrameSource
    stats: CameraStats
    loop: CameraLoop
    task: asyncio.Task[None] | None = None


class Pipeline:
    """Start with `start()`, wait with `wait()`, end with `stop()`; safe to stop at any point."""

    def __init__(
        self,
        config: StreamerConfig,
        *,
        sources: SourceFactory[CameraConfig],
        detector: DetectorFactory,
        sinks: list[Sink] | None = None,
        stages: list[FrameStage[CameraConfig]] | None = None,
        stay_when_empty: bool = False,
        observers: list[ResultObserver] | None = None,
        keep_images: Callable[[str], bool] | None = None,
        registry: StatsRegistry | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else StatsRegistry()
        self.sinks = sinks or []
        self.fanout = SinkFanout(self.sinks)
        self.stages = stages or []
        self.observers = observers or []
        self.keep_images = keep_images
        self.stay_when_empty = stay_when_empty
        models = [config.detector.model, *(m for stage in self.stages for m in stage.models)]
        self.triton = TritonConnection(
            config, list(dict.fromkeys(models)), self.registry, on_fatal=self._fail
        )
        self.build_source = sources
        self.build_detector = detector
        self.detector: Detector | None = None
        self.cameras: dict[str, CameraRuntime] = {}
        self.watchdog = CameraWatchdog(
            stall_after_s=config.metrics.stall_after_s,
            server=self.registry.server,
            on_change=self._camera_state_changed,
            secrets=url_secrets(camera.url for camera in config.cameras),
        )
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = False
        self._managed = False  # cameras were added or removed at runtime
        self._changed = asyncio.Event()  # the camera set changed, or the pipeline stops
        self._failed = asyncio.Event()
        self._failure: str | None = None

    async def start(self) -> None:
        try:
            await self.triton.start()
            self.detector = self.build_detector(self.triton.models)
            for stage in self.stages:
                await stage.start(self.triton.models)
                for kind, stats in stage.registered_stats().items():
                    self.registry.register(kind, stage.name, stats)
            names: dict[str, int] = {}
            for sink in list(self.sinks):
                names[sink.name] = names.get(sink.name, 0) + 1
                unique = sink.name if names[sink.name] == 1 else f"{sink.name}#{names[sink.name]}"
                if await self._start_sink(sink, unique):
                    self.registry.register(StatsKind.SINK, unique, sink.stats)
        except BaseException:
            await self.stop()
            raise
        for camera in self.config.enabled_cameras:
            self._start_camera(camera)
        self._started = True
        self._watch_task = asyncio.create_task(self._watch_cameras(), name="pipeline:watchdog")
        log.info("pipeline started: %d cameras", len(self.cameras))

    async def _start_sink(self, sink: Sink, unique: str) -> bool:
        """Start one sink; one that cannot (its file, its spill file) is reported (one ERROR,
        `/readyz`, the dashboard) and left out: the cameras never stop for an output."""
        try:
            await sink.start()
        except Exception as exc:
            problem = f"{unique}: cannot start: {exc}"
            log.error("sink %s; the cameras run without it", problem)
            health = PartHealth(PartState.UNAVAILABLE, problem)
            self.registry.register(StatsKind.PART, f"sink {unique}", health)
            self.sinks.remove(sink)  # the fan-out shares this list
            with contextlib.suppress(Exception):
                await sink.stop()
            return False
        return True

    async def wait(self) -> None:
        """Return when every camera has finished on its own (files without loop) or the pipeline
        stopped; cameras added or removed meanwhile count, so this follows runtime changes.

        An empty camera set returns at once only in a pipeline that was never changed and is not
        told to `stay_when_empty` (a service whose cameras come and go over its API waits for them).
        Raises PipelineFailed when something the service cannot do without (the inference
        server) is gone for good, so that the process exits non-zero and gets restarted.
        """
        while self._failure is None and not self._stopping:
            tasks = [r.task for r in self.cameras.values() if r.task is not None]
            running = [task for task in tasks if not task.done()]
            if tasks and not running:
                break
            if not tasks and not (self.stay_when_empty or self._managed):
                break
            self._changed.clear()
            failed = asyncio.ensure_future(self._failed.wait())
            changed = asyncio.ensure_future(self._changed.wait())
            waiting: set[asyncio.Future[Any]] = {failed, changed, *running}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                failed.cancel()
                changed.cancel()
        if self._failure is not None:
            raise PipelineFailed(self._failure)

    # -- cameras at runtime ---------------------------------------------------------------------

    def _start_camera(self, camera: CameraConfig) -> CameraRuntime:
        assert self.detector is not None, "start() first"
        for stage in self.stages:
            stage.configure_camera(camera)
        self.detector.set_camera_weight(camera.name, camera.weight)
        stats = CameraStats(camera.name, redact_url(camera.url))
        self.registry.register(StatsKind.CAMERA, camera.name, stats)
        prepare: Callable[[Frame], None] = self.detector.prepare
        gate: MotionGate | None = None
        if camera.motion_gated:  # motion is measured in the camera's thread, before prepare
            stats.motion_gated = True
            gate = MotionGate(camera.motion, stats)
            prepare = gated_prepare(gate, prepare)
        hooks = SourceHooks(
            stats=stats,
            prepare=prepare,
            # A stage that reads the full-size picture (faces, ReID) has it made in the thread.
            convert_in_thread=any(stage.needs_image for stage in self.stages),
            on_status=self._source_changed,
        )
        source = self.build_source(camera, hooks)
        loop = CameraLoop(
            camera,
            source,
            detector=self.detector,
            stages=self.stages,
            tracker_settings=self.config.tracker,
            depth=max(1, round(self.config.inference.frames_in_flight_per_camera * camera.weight)),
            stats=stats,
            deliver=self._deliver,
            deliver_events=self._deliver_events,
            keep_images=self.keep_images,
            on_tracks=gate.set_tracking if gate is not None else None,
        )
        runtime = CameraRuntime(config=camera, source=source, stats=stats, loop=loop)
        self.cameras[camera.name] = runtime
        source.start()
        runtime.task = asyncio.create_task(self._run_camera(runtime), name=f"camera:{camera.name}")
        return runtime

    async def add_camera(self, camera: CameraConfig) -> None:
        """Start one more camera (a disabled one is only remembered); others never notice."""
        if not self._started or self._stopping:
            raise RuntimeError("the pipeline is not running")
        if camera.name in self.cameras:
            raise ValueError(f"camera '{camera.name}' is already running")
        self.watchdog.learn_secrets(url_secrets([camera.url]))
        self._managed = True
        if camera.enabled:
            self._start_camera(camera)
            log.info("camera %s added (%s)", camera.name, redact_url(camera.url))
        self._changed.set()

    async def remove_camera(self, name: str) -> bool:
        """Stop one camera: its tracks end (`end` events), its decode thread stops, its stats go.

        False when no such camera runs (unknown, or disabled)."""
        runtime = self.cameras.pop(name, None)
        self._managed = True
        if runtime is None:
            self._changed.set()
            return False
        await runtime.source.stop()
        if runtime.task is not None:
            if not runtime.task.done():
                runtime.task.cancel()
            await asyncio.gather(runtime.task, return_exceptions=True)
        self.watchdog.evaluate(runtime.stats)  # publish `stopped` for this camera
        self.registry.unregister(StatsKind.CAMERA, name)
        log.info("camera %s removed", name)
        self._changed.set()
        return True

    async def update_camera(self, camera: CameraConfig) -> None:
        """Restart one camera with new settings (remove, then add); `enabled: false` stops it."""
        await self.remove_camera(camera.name)
        await self.add_camera(camera)

    def _fail(self, message: str) -> None:
        self._failure = message
        self._failed.set()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._changed.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await asyncio.gather(*(r.source.stop() for r in self.cameras.values()))
        for runtime in self.cameras.values():
            if runtime.task is not None and not runtime.task.done():
                runtime.task.cancel()
        await asyncio.gather(
            *(r.task for r in self.cameras.values() if r.task is not None), return_exceptions=True
        )
        for runtime in self.cameras.values():
            self.watchdog.evaluate(runtime.stats)  # publish `stopped` before the sinks flush
        for stage in self.stages:
            try:
                await stage.stop()
            except Exception:
                log.exception("stage %s failed to stop cleanly", stage.name)
        for sink in self.sinks:
            try:
                await sink.stop()
            except Exception:
                log.exception("sink %s failed to stop cleanly", sink.name)
        await self.triton.stop()
        log.info("pipeline stopped")

    def _source_changed(self, camera: str, _state: CameraState, _detail: str | None) -> None:
        runtime = self.cameras.get(camera)
        if runtime is not None:
            self.watchdog.evaluate(runtime.stats)

    def _camera_state_changed(self, stats: CameraStats) -> None:
        self.fanout.status(CameraStatusEvent(stats.name, stats.state.value, stats.detail))

    async def _watch_cameras(self) -> None:
        """Re-derive every camera's state: stalls and degradation show without any event."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for runtime in self.cameras.values():
                self.watchdog.evaluate(runtime.stats)
            self.fanout.set_availability(AVAILABLE_ONLINE if self.processing() else AVAILABLE_DEGRADED)

    def processing(self) -> bool:
        """Whether frames are processed as they should: inference works (the server and every
        model answer) and no camera's frames arrive unprocessed (degraded)."""
        if inference_problems(self.registry.server(), self.registry.models()):
            return False
        return not any(r.stats.state == CameraState.DEGRADED for r in self.cameras.values())

    async def _run_camera(self, runtime: CameraRuntime) -> None:
        """Supervise one camera's processing: an unexpected error restarts it, never stops it.

        The traceback is logged the first time, later failures in one line; every restart is
        counted. Other cameras never notice. Only the end of the source ends the camera.
        """
        name = runtime.config.name
        backoff = Backoff(PROCESSING_BACKOFF)
        while True:
            started = time.monotonic()
            try:
                await runtime.loop.run()
                return  # the source ended: a finished file, or the pipeline stopping
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                runtime.stats.processing_restarts += 1
                if time.monotonic() - started >= PROCESSING_HEALTHY_AFTER_S:
                    backoff.reset()
                delay = backoff.next_delay()
                if runtime.stats.processing_restarts == 1:
                    log.exception("camera %s: processing failed; restarting in %.1f s", name, delay)
                else:
                    log.warning(
                        "camera %s: processing failed again (%d restarts): %s: %s; restarting in %.1f s",
                        name, runtime.stats.processing_restarts, type(exc).__name__, exc, delay,
                    )
                await asyncio.sleep(delay)

    def _deliver(self, result: FrameResult) -> None:
        """Hand the result to every sink once, then let observers (metrics) see it, publish included."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        self.fanout.result(result)
        result.timings["publish"] = time.perf_counter() - started
        runtime = self.cameras.get(result.camera)
        if runtime is not None:
            spent = runtime.stats.cpu_s
            spent["publish"] = spent.get("publish", 0.0) + time.thread_time() - started_cpu
        for observer in self.observers:
            try:
                observer.observe(result)
            except Exception:
                log.exception("observer failed")

    def _deliver_events(self, events: Sequence[Event]) -> None:
        self.fanout.events(events)
