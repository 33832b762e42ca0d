"""One camera, in order: frames in, up to `depth` in detection at once, tracked and staged in order.

Up to `depth` frames of a camera are in inference at once, so one frame's round trip overlaps the
next; results still reach the tracker strictly in frame order (the ordered in-flight window).

A frame the motion gate left out (`sources/motion.py`) takes its place in that order without a
request, and without counting against `depth` (a camera with detections in flight still takes its
next frames from the source rather than letting them be replaced): it is published with the
tracks of the last detected frame carried over unchanged (`detected` false), and the later stages
skip it, since nothing they could see has changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from streamer.config import CameraConfig, TrackerConfig
from streamer.core.detections import Detections
from streamer.core.events import Event
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import Detector, FrameSource, FrameStage
from streamer.core.stats import CameraStats
from streamer.inference.client import InferenceError
from streamer.sources.motion import needs_detection
from streamer.tracking.camera_tracker import CameraTracker

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 10.0
# Gated frames wait in the window behind a detection without a request of their own: they do not
# count against `depth`, but the window holds at most this many frames (bounded latency).
MAX_WINDOW_FRAMES = 32


class CameraLoop:
    """`await run()` processes the camera's frames until its source ends or the task is cancelled."""

    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        *,
        detector: Detector,
        stages: Sequence[FrameStage[CameraConfig]],
        tracker_settings: TrackerConfig,
        depth: int,
        stats: CameraStats,
        deliver: Callable[[FrameResult], None],
        deliver_events: Callable[[Sequence[Event]], None],
        keep_images: Callable[[str], bool] | None = None,
        on_tracks: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.source = source
        self.detector = detector
        self.stages = stages
        self.tracker_settings = tracker_settings
        self.depth = depth
        self.stats = stats
        self.deliver = deliver
        self.deliver_events = deliver_events
        self.keep_images = keep_images
        self.on_tracks = on_tracks  # told after each detected frame whether tracks are open
        self.tracker: CameraTracker | None = None
        self._last_tracks: Detections | None = None  # the last published tracks, to carry over
        self._last_error_logged = -float("inf")

    async def run(self) -> None:
        """Process frames in order; on any exit the camera's open tracks end (`end` events)."""
        last_frame: tuple[int, float] = (0, time.time())  # index and capture time, for `end` events
        # A gated frame waits in order with no request (None).
        in_flight: deque[tuple[Frame, asyncio.Task[Detections | None] | None]] = deque()
        next_frame: asyncio.Task[Frame | None] | None = None
        source_ended = False
        try:
            while True:
                requests = sum(1 for _frame, task in in_flight if task is not None)
                room = requests < self.depth and len(in_flight) < MAX_WINDOW_FRAMES
                if next_frame is None and not source_ended and room:
                    next_frame = asyncio.create_task(self.source.next_frame())
                waiting: set[asyncio.Task[Any]] = {next_frame} if next_frame is not None else set()
                if in_flight and in_flight[0][1] is not None:
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
                        last_frame = (frame.index, frame.capture_ts)
                        task = (
                            asyncio.create_task(self._detect(frame))
                            if needs_detection(frame) else None
                        )
                        in_flight.append((frame, task))
                while in_flight and (in_flight[0][1] is None or in_flight[0][1].done()):
                    frame, detection = in_flight.popleft()
                    if detection is None:
                        self.deliver(self._carry(frame))
                        continue
                    detections = detection.result()
                    if detections is not None:
                        self.deliver(await self._conclude(frame, detections))
        finally:
            pending: list[asyncio.Task[Any] | None] = [next_frame, *(t for _f, t in in_flight)]
            for task in pending:
                if task is not None:
                    task.cancel()
            self._end_tracks(*last_frame)

    def _end_tracks(self, frame_index: int, capture_ts: float) -> None:
        if self.tracker is not None and self.tracker.states:
            events: list[Event] = [*self.tracker.finish(frame_index, capture_ts)]
            for stage in self.stages:
                try:
                    events = stage.finish_events(self.name, events)
                except Exception:
                    log.exception("camera %s: stage %s failed on the final events",
                                  self.name, stage.name)
            self.deliver_events(events)
        self.tracker = None
        self._last_tracks = None
        for stage in self.stages:
            with contextlib.suppress(Exception):
                stage.forget_camera(self.name)

    async def _detect(self, frame: Frame) -> Detections | None:
        """Person detection; a failed request skips this frame only (counted, logged sparingly)."""
        in_camera_thread_s = sum(frame.timings.seconds.values())  # decode, preprocess
        frame.timings.add("wait", max(0.0, frame.age_s() - in_camera_thread_s))
        try:
            return await self.detector.detect(frame)
        except InferenceError as exc:
            self.stats.inference_errors += 1
            now = time.monotonic()
            if now - self._last_error_logged >= ERROR_LOG_INTERVAL_S:
                self._last_error_logged = now
                log.warning(
                    "camera %s: inference failed (%d so far): %s",
                    self.name, self.stats.inference_errors, exc,
                )
            return None

    async def _conclude(self, frame: Frame, detections: Detections) -> FrameResult:
        """Tracking and the later stages, in frame order."""
        if self.tracker is None:
            self.tracker = CameraTracker(
                self.name,
                self.tracker_settings,
                self.config.max_fps or self.stats.source_fps,
                source_fps=self.stats.source_fps,
            )
        started, started_cpu = time.perf_counter(), time.thread_time()
        tracks, events = self.tracker.update(frame, detections)
        frame.timings.add("track", time.perf_counter() - started)
        frame.timings.add_cpu("track", time.thread_time() - started_cpu)
        result = self._result(frame, tracks, detected=True)
        result.events = [*events]
        for stage in self.stages:
            started = time.perf_counter()
            try:
                await stage.process(frame, result, self.tracker)
            except InferenceError as exc:
                self.stats.inference_errors += 1
                log.debug("camera %s: stage %s skipped: %s", frame.camera, stage.name, exc)
            frame.timings.add(stage.name, time.perf_counter() - started)
        self._last_tracks = result.tracks
        if self.on_tracks is not None:
            self.on_tracks(bool(self.tracker.states))
        return self._finish(frame, result)

    def _carry(self, frame: Frame) -> FrameResult:
        """A gated frame: the last published tracks as they were, no events, no stages."""
        tracks = self._last_tracks if self._last_tracks is not None else Detections.empty()
        self.stats.gated += 1
        return self._finish(frame, self._result(frame, tracks, detected=False))

    @staticmethod
    def _result(frame: Frame, tracks: Detections, *, detected: bool) -> FrameResult:
        return FrameResult(
            camera=frame.camera,
            frame_index=frame.index,
            capture_ts=frame.capture_ts,
            width=frame.width,
            height=frame.height,
            tracks=tracks,
            latency_s=0.0,
            timings=frame.timings.seconds,
            detected=detected,
        )

    def _finish(self, frame: Frame, result: FrameResult) -> FrameResult:
        if self.keep_images is not None and self.keep_images(frame.camera):
            result.image = frame.image  # made here if the camera's thread did not (a few a second)
        spent = self.stats.cpu_s
        for name, seconds in frame.timings.cpu.items():
            spent[name] = spent.get(name, 0.0) + seconds
        result.latency_s = frame.age_s()
        self.stats.processed += 1
        self.stats.last_latency_s = result.latency_s
        self.stats.last_result_monotonic = time.monotonic()
        return result
