"""What the pipeline is doing, per camera, model and sink: one source for Prometheus, the page and `stats`.

Per-result figures (latency histograms) come from `observe()`, called by the pipeline for every
result; everything else is read from the stats registry by a sampler task, which also derives
rates, connection quality and the sparkline history, and polls Triton's statistics API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer.config import MetricsConfig, StreamerConfig
from streamer.core.frames import FrameResult
from streamer.core.redaction import redact_url, scrub, url_secrets
from streamer.core.stats import (
    AnalyticsStats,
    CameraState,
    CameraStats,
    PartState,
    StatsKind,
    StatsRegistry,
    inference_problems,
)
from streamer.core.tasks import cancel_and_wait
from streamer.inference.statistics import TritonStatistics

log = logging.getLogger(__name__)

NOT_STREAMING_STATES = {CameraState.FINISHED, CameraState.STOPPED}  # an ended file is no problem
STATE_VERSION = 1
MS_PER_S = 1000.0
STATE_HISTORY_LENGTH = 20  # state changes kept per camera for the camera view


class SlidingWindow:
    """Cumulative readings over the last `window_s`; rates and means come from their differences."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, tuple[float, ...]]] = deque()

    def add(self, now: float, *values: float) -> None:
        self._points.append((now, values))
        # Keep one point at or before the window start, so the window is always fully covered.
        while len(self._points) > 2 and self._points[1][0] <= now - self.window_s:
            self._points.popleft()

    def delta(self) -> tuple[float, tuple[float, ...]] | None:
        """(seconds, value differences) across the window, or None before two readings."""
        if len(self._points) < 2:
            return None
        (t0, first), (t1, last) = self._points[0], self._points[-1]
        if t1 <= t0:
            return None
        return t1 - t0, tuple(b - a for a, b in zip(first, last))

    def clear(self) -> None:
        self._points.clear()


@dataclass
class CameraWatch:
    """What the sampler knows about one camera between samples."""

    name: str
    source: str  # redacted URL
    window: SlidingWindow
    history_points: int
    status: str = "connecting"
    detail: str | None = None
    decoded_fps: float = 0.0
    processed_fps: float = 0.0
    mean_latency_s: float | None = None
    quality: float = 1.0
    tracks: int = 0
    latency_sum_s: float = 0.0  # cumulative over every observed result
    latency_count: int = 0
    last_decoded: int = 0
    last_decoded_change: float | None = None  # monotonic time the decoded count last moved
    health: deque[tuple[float, bool]] = field(default_factory=deque)
    # (wall-clock time, state, detail) of the latest state changes, oldest first
    state_history: deque[tuple[float, str, str | None]] = field(
        default_factory=lambda: deque(maxlen=STATE_HISTORY_LENGTH)
    )
    fps_history: deque[float] = field(init=False)
    latency_history: deque[float | None] = field(init=False)

    def __post_init__(self) -> None:
        self.fps_history = deque(maxlen=self.history_points)
        self.latency_history = deque(maxlen=self.history_points)


@dataclass
class ModelWatch:
    name: str
    window: SlidingWindow
    requests_per_s: float = 0.0
    triton: TritonStatistics | None = None
    recent_batch: float | None = None  # mean batch size since the previous statistics reading
    recent_queue_ms: float | None = None  # per request
    recent_compute_ms: float | None = None  # per request


class PipelineMonitor:
    """Pipeline observer plus sampler task; owns its own Prometheus registry. start()/stop()."""

    def __init__(
        self,
        config: StreamerConfig,
        settings: MetricsConfig,
        history_points: int,
        stats: StatsRegistry,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.started_at = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "streamer_camera_latency_seconds",
            "Capture-to-publish latency of processed frames: from the packet taken for decoding "
            "to the result handed to every sink.",
            ["camera"],
            buckets=settings.latency_buckets_s,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "streamer_camera_stage_seconds",
            "Time a frame spent in each pipeline stage (decode, preprocess, wait, queue, "
            "inference, postprocess, track, later stages, publish).",
            ["camera", "stage"],
            buckets=settings.stage_buckets_s,
            registry=self.registry,
        )
        self.secrets = url_secrets(camera.url for camera in config.cameras)
        self.history_points = history_points
        self.cameras: dict[str, CameraWatch] = {
            camera.name: self._watch(camera.name, redact_url(camera.url))
            for camera in config.enabled_cameras
        }
        self._seen: dict[str, CameraStats] = {}  # the stats object each camera registered last
        self.on_camera_removed: list[Callable[[str], None]] = []
        self.on_camera_added: list[Callable[[str], None]] = []
        self.models: dict[str, ModelWatch] = {}
        self.registry.register(_PipelineCollector(self))
        self._task: asyncio.Task[None] | None = None
        self._updated = asyncio.Event()
        self._last_triton_poll = -math.inf

    def _watch(self, name: str, source: str) -> CameraWatch:
        return CameraWatch(
            name=name,
            source=source,
            window=SlidingWindow(self.settings.rate_window_s),
            history_points=self.history_points,
        )

    # -- cameras that come and go -------------------------------------------------------------

    def learn_secrets(self, urls: Iterable[str]) -> None:
        """A camera added at runtime: its credentials are scrubbed from details too."""
        self.secrets = sorted(set(self.secrets) | set(url_secrets(urls)), key=len, reverse=True)

    def sync_cameras(self, pipeline_running: bool = False) -> None:
        """Follow the registry: a newly registered camera gets a watch; one that registered a new
        stats object (restarted with new settings) starts its figures over; one that was
        registered and is gone is forgotten with all its Prometheus series. Before the pipeline
        runs, configured cameras not registered yet show as connecting; once it runs
        (`pipeline_running`, after a change at runtime) an unregistered camera is gone."""
        registered = self.stats.cameras()
        for name, stats in registered.items():
            watch = self.cameras.get(name)
            restarted = name in self._seen and self._seen[name] is not stats
            if watch is None or restarted:
                if watch is not None:
                    self._forget(name)
                self.cameras[name] = self._watch(name, stats.source)
                if watch is not None:  # restarted with new settings: its state history goes on
                    self.cameras[name].state_history.extend(watch.state_history)
                for callback in self.on_camera_added:
                    callback(name)
            self._seen[name] = stats
        for name in list(self.cameras):
            if (name in self._seen or pipeline_running) and name not in registered:
                self._seen.pop(name, None)
                self._forget(name)
                del self.cameras[name]
                for callback in self.on_camera_removed:
                    callback(name)

    def _forget(self, name: str) -> None:
        """Drop the camera's histogram series (the collector's series follow `self.cameras`)."""
        self.latency.remove_by_labels({"camera": name})
        self.stage_latency.remove_by_labels({"camera": name})

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample_forever(), name="metrics:sampler")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)
        self.wake()  # live-update listeners notice and end

    async def next_update(self) -> None:
        """Return after the next sample (for live-update streams)."""
        await self._updated.wait()

    # -- per result ---------------------------------------------------------------------------

    def observe(self, result: FrameResult) -> None:
        if result.camera not in self.cameras:
            self.sync_cameras()  # a camera added at runtime, seen before the next sample
            if result.camera not in self.cameras:
                return  # one removed a moment ago: no series that would never go away
        # capture to publish: the result's latency plus handing it to every sink
        self.latency.labels(result.camera).observe(result.latency_s + result.timings.get("publish", 0.0))
        for stage, seconds in result.timings.items():
            self.stage_latency.labels(result.camera, stage).observe(seconds)
        watch = self.cameras.get(result.camera)
        if watch is not None:
            watch.latency_sum_s += result.latency_s
            watch.latency_count += 1
            watch.tracks = len(result.tracks)

    # -- sampling -----------------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("metrics sampling failed")
            await asyncio.sleep(self.settings.sample_interval_s)

    async def sample(self) -> None:
        """Refresh rates, status, quality and history; poll Triton when due; wake listeners."""
        now = time.monotonic()
        self.sync_cameras()
        for watch in self.cameras.values():
            self._sample_camera(watch, now)
        self._sample_models(now)
        if now - self._last_triton_poll >= self.settings.triton_statistics_interval_s:
            self._last_triton_poll = now
            await self._poll_triton()
        self.wake()

    def wake(self) -> None:
        """Release everyone waiting in next_update()."""
        event, self._updated = self._updated, asyncio.Event()
        event.set()

    def _sample_camera(self, watch: CameraWatch, now: float) -> None:
        source = self.stats.cameras().get(watch.name)
        if source is None:
            watch.status, watch.detail = "connecting", None
            return
        status, detail = source.state.value, scrub(source.detail, self.secrets)
        if not watch.state_history or watch.state_history[-1][1:] != (status, detail):
            watch.state_history.append((time.time(), status, detail))
        watch.status, watch.detail = status, detail
        watch.window.add(
            now, source.decoded, source.processed, watch.latency_sum_s, watch.latency_count
        )
        change = watch.window.delta()
        if change is not None:
            seconds, (decoded, processed, latency_sum, latency_count) = change
            watch.decoded_fps = decoded / seconds
            watch.processed_fps = processed / seconds
            watch.mean_latency_s = latency_sum / latency_count if latency_count else None
        if source.state != CameraState.STREAMING:
            watch.tracks = 0
        if source.state not in NOT_STREAMING_STATES:
            watch.health.append((now, source.state == CameraState.STREAMING))
        while watch.health and watch.health[0][0] < now - self.settings.quality_window_s:
            watch.health.popleft()
        if watch.health:
            watch.quality = sum(healthy for _, healthy in watch.health) / len(watch.health)
        watch.fps_history.append(round(watch.processed_fps, 2))
        latency_ms = None if watch.mean_latency_s is None else watch.mean_latency_s * MS_PER_S
        watch.latency_history.append(None if latency_ms is None else round(latency_ms, 1))

    def _sample_models(self, now: float) -> None:
        for name, model in self.stats.models().items():
            watch = self.models.get(name)
            if watch is None:
                watch = self.models[name] = ModelWatch(name, SlidingWindow(self.settings.rate_window_s))
            watch.window.add(now, model.requests)
            change = watch.window.delta()
            if change is not None:
                seconds, (requests,) = change
                watch.requests_per_s = requests / seconds

    async def _poll_triton(self) -> None:
        server = self.stats.server()
        fetch = server.fetch_statistics if server is not None else None
        if fetch is None:
            return
        for name in self.stats.models():
            try:
                async with asyncio.timeout(self.settings.triton_statistics_timeout_s):
                    response = await fetch(name)
                entries = response.get("model_stats") or []
            except Exception as exc:
                log.debug("Triton statistics for %s unavailable: %s", name, exc)
                continue
            if not entries or name not in self.models:
                continue
            current = TritonStatistics.from_json(entries[0])
            watch = self.models[name]
            previous, watch.triton = watch.triton, current
            if previous is None:
                continue
            executions = current.executions - previous.executions
            inferences = current.inferences - previous.inferences
            successes = current.successes - previous.successes
            watch.recent_batch = inferences / executions if executions > 0 else None
            if successes > 0:
                watch.recent_queue_ms = (current.queue_s - previous.queue_s) / successes * MS_PER_S
                watch.recent_compute_ms = (
                    (current.compute_s - previous.compute_s) / successes * MS_PER_S
                )

    # -- what the page and `streamer stats` read ----------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready view of everything the dashboard shows; never holds a secret."""
        registered = self.stats.cameras()
        analytics = self._analytics_by_camera()
        cameras = []
        for watch in self.cameras.values():
            source = counters = registered.get(watch.name)
            latency = watch.mean_latency_s
            cameras.append(
                {
                    "name": watch.name,
                    "source": watch.source,
                    "status": watch.status,
                    "detail": watch.detail,
                    "decoded_fps": round(watch.decoded_fps, 2),
                    "processed_fps": round(watch.processed_fps, 2),
                    "latency_ms": None if latency is None else round(latency * MS_PER_S, 1),
                    "quality": round(watch.quality, 3),
                    "tracks": watch.tracks,
                    "decoded": source.decoded if source else 0,
                    "processed": counters.processed if counters else 0,
                    "dropped": source.dropped if source else 0,
                    "skipped": source.skipped if source else 0,
                    "motion_gated": source.motion_gated if source else False,
                    "gated": source.gated if source else 0,
                    "motion_area": round(source.motion_area, 4) if source else 0.0,
                    "reconnects": source.reconnects if source else 0,
                    "stream_errors": source.errors if source else 0,
                    "inference_errors": counters.inference_errors if counters else 0,
                    "processing_restarts": counters.processing_restarts if counters else 0,
                    "history": {
                        "fps": list(watch.fps_history),
                        "latency_ms": list(watch.latency_history),
                    },
                    "state_history": [
                        {"time": round(at, 3), "status": status, "detail": detail}
                        for at, status, detail in watch.state_history
                    ],
                    "analytics": analytics.get(watch.name, {"zones": {}, "lines": {}}),
                }
            )
        models = []
        triton_models = self.stats.models()
        for name, model_watch in self.models.items():
            model = triton_models.get(name)
            triton = model_watch.triton
            models.append(
                {
                    "name": name,
                    "requests": model.requests if model else 0,
                    "items": model.items if model else 0,
                    "failures": model.failures if model else 0,
                    "up": model.up if model else False,
                    "last_error": scrub(model.last_error, self.secrets) if model and not model.up else None,
                    "requests_per_s": round(model_watch.requests_per_s, 2),
                    "max_batch_size": model.max_batch_size if model else None,
                    "requests_in_flight": model.requests_in_flight if model else None,
                    "recent_batch": _rounded(model_watch.recent_batch, 2),
                    "queue_ms": _rounded(model_watch.recent_queue_ms, 1),
                    "compute_ms": _rounded(model_watch.recent_compute_ms, 1),
                    "batch_executions": {
                        str(size): count
                        for size, count in sorted((triton.batch_executions if triton else {}).items())
                    },
                }
            )
        sinks = [
            {"name": name, **vars(stats)}
            for name, stats in self.sink_stats()
        ]
        return {
            "version": STATE_VERSION,
            "time": time.time(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "sample_interval_s": self.settings.sample_interval_s,
            "inference": self._server_state(),
            "cameras": cameras,
            "models": models,
            "sinks": sinks,
            "parts": [
                {"name": name, "state": part.state.value, "problem": scrub(part.problem, self.secrets)}
                for name, part in self.stats.parts().items()
            ],
        }

    def _analytics_by_camera(self) -> dict[str, dict[str, Any]]:
        """Per camera: occupancy and event counts per zone, crossings per line and direction."""
        cameras: dict[str, dict[str, Any]] = {}

        def entry(camera: str) -> dict[str, Any]:
            return cameras.setdefault(camera, {"zones": {}, "lines": {}})

        for stats in self.stats.read(StatsKind.ANALYTICS).values():
            if not isinstance(stats, AnalyticsStats):
                continue
            for (camera, zone), occupancy in sorted(stats.occupancy.items()):
                entry(camera)["zones"].setdefault(zone, {"occupancy": 0, "events": {}})
                entry(camera)["zones"][zone]["occupancy"] = occupancy
            for (camera, zone, kind), count in sorted(stats.zone_events.items()):
                zone_entry = entry(camera)["zones"].setdefault(zone, {"occupancy": 0, "events": {}})
                zone_entry["events"][kind] = count
            for (camera, line, direction), count in sorted(stats.line_crossings.items()):
                entry(camera)["lines"].setdefault(line, {})[direction] = count
        return cameras

    def _server_state(self) -> dict[str, Any] | None:
        server = self.stats.server()
        if server is None:
            return None
        models = self.stats.models()
        problems = inference_problems(server, models)
        down_since = server.down_since_monotonic
        if server.up:  # the server looks fine: how long its first failing model has been down
            down_since = min(
                (m.down_since_monotonic for m in models.values() if m.down_since_monotonic is not None),
                default=None,
            )
        return {
            "mode": server.mode,
            "up": not problems,  # frames can be processed: the server and every model answer
            "problem": scrub(problems[0], self.secrets) if problems else None,
            "restarts": server.restarts,
            "down_for_s": None if down_since is None else round(time.monotonic() - down_since, 1),
        }

    def sink_stats(self) -> Iterator[tuple[str, Any]]:
        """(unique name, SinkStats) per sink; a sink that fails to report is skipped."""
        try:
            sinks = self.stats.read(StatsKind.SINK)
        except Exception:
            log.debug("a sink failed to report stats", exc_info=True)
            return
        yield from sinks.items()


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class _PipelineCollector(Collector):
    """Builds counter and gauge families from the pipeline's counters at scrape time."""

    def __init__(self, monitor: PipelineMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on the running pipeline; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        yield from self._cameras()
        yield from self._server()
        yield from self._models()
        yield from self._stages()
        yield from self._analytics()
        yield from self._sinks()

    def _server(self) -> Iterator[Metric]:
        server = self.monitor.stats.server()
        up = GaugeMetricFamily(
            "streamer_inference_server_up",
            "1 when the inference server is up and its models ready; 0 while it is down.",
            labels=["mode"],
        )
        restarts = CounterMetricFamily(
            "streamer_inference_server_restarts",
            "Times the inference server was brought back (restarted or reconnected) after a failure.",
            labels=["mode"],
        )
        parts = GaugeMetricFamily(
            "streamer_part_ok",
            "1 while an optional part (event pictures, a store, a sink) works as configured; 0 "
            "while it is degraded or unavailable (the cameras run without it).",
            labels=["part"],
        )
        if server is not None:
            working = not inference_problems(server, self.monitor.stats.models())
            up.add_metric([server.mode], 1.0 if working else 0.0)
            restarts.add_metric([server.mode], server.restarts)
        for name, part in self.monitor.stats.parts().items():
            parts.add_metric([name], 1.0 if part.state == PartState.OK else 0.0)
        yield from (up, restarts, parts)

    def _stages(self) -> Iterator[Metric]:
        """Every counter a stage registers (e.g. identities: face detections, embeddings, events);
        fields with `metadata={"gauge": True}` are levels, exported as gauges."""
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for stage, counters in self.monitor.stats.read(StatsKind.STAGE).items():
            if not dataclasses.is_dataclass(counters):
                continue
            for item in dataclasses.fields(counters):
                value = getattr(counters, item.name)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                family = families.get(item.name)
                if family is None:
                    kind = GaugeMetricFamily if item.metadata.get("gauge") else CounterMetricFamily
                    family = families[item.name] = kind(
                        f"streamer_stage_{item.name}",
                        f"Stage {'gauge' if item.metadata.get('gauge') else 'counter'} "
                        f"'{item.name.replace('_', ' ')}', per stage.",
                        labels=["stage"],
                    )
                family.add_metric([stage], value)
        yield from families.values()

    def _analytics(self) -> Iterator[Metric]:
        """Zones and lines: occupancy now, zone events and line crossings since start."""
        occupancy = GaugeMetricFamily(
            "streamer_zone_occupancy", "Confirmed tracks in the zone now.", labels=["camera", "zone"]
        )
        zone_events = CounterMetricFamily(
            "streamer_zone_events", "Zone events (zone_enter, zone_exit, loitering) reported.",
            labels=["camera", "zone", "event"],
        )
        crossings = CounterMetricFamily(
            "streamer_line_crossings", "Line crossings reported, per direction name.",
            labels=["camera", "line", "direction"],
        )
        entries = self.monitor.stats.read(StatsKind.ANALYTICS).values()
        for stats in entries:
            if not isinstance(stats, AnalyticsStats):
                continue
            for (camera, zone), value in sorted(stats.occupancy.items()):
                occupancy.add_metric([camera, zone], value)
            for (camera, zone, kind), count in sorted(stats.zone_events.items()):
                zone_events.add_metric([camera, zone, kind], count)
            for (camera, line, direction), count in sorted(stats.line_crossings.items()):
                crossings.add_metric([camera, line, direction], count)
        yield from (occupancy, zone_events, crossings)

    def _cameras(self) -> Iterator[Metric]:
        monitor = self.monitor
        registered = monitor.stats.cameras()
        labels = ["camera"]

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"streamer_camera_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"streamer_camera_{name}", doc, labels=labels + (extra or []))

        decoded = counter("decoded_frames", "Frames decoded from the stream.")
        processed = counter(
            "processed_frames",
            "Frames published: detected and tracked, or carried over by motion gating.",
        )
        gated = counter(
            "gated_frames",
            "Frames without motion that skipped detection (published with the last tracks).",
        )
        motion_frames = counter("motion_frames", "Frames in which the motion detector found motion.")
        motion_area = gauge(
            "motion_area_ratio", "Moving share of the unmasked picture in the latest frame (0-1)."
        )
        skipped = counter("skipped_frames", "Frames left out by the camera's max_fps cap.")
        dropped = counter(
            "dropped_frames",
            "Frames replaced by a newer one before the pipeline took them, or left undecoded "
            "by a camera far behind.",
        )
        reconnects = counter("reconnects", "Reconnections after a stream ended, stalled or failed.")
        stream_errors = counter("stream_errors", "Errors opening or reading the stream.")
        inference_errors = counter("inference_errors", "Frames lost to failed inference requests.")
        restarts = counter(
            "processing_restarts", "Times the camera's processing failed unexpectedly and restarted."
        )
        decoded_fps = gauge("decoded_fps", "Frames decoded per second (recent window).")
        processed_fps = gauge("processed_fps", "Frames processed per second (recent window).")
        quality = gauge(
            "connection_quality_ratio",
            "Share of the recent window the camera was online and delivering frames (0-1).",
        )
        up = gauge("up", "1 when the camera is streaming: frames decoded and processed.")
        status = gauge(
            "state",
            "Camera state, one series per state (connecting, streaming, stalled, degraded, "
            "backoff, failed, finished, stopped); 1 = current.",
            ["state"],
        )
        tracks = gauge("active_tracks", "People tracked in the camera's latest frame.")
        info = gauge("info", "Camera source (credentials redacted).", ["source"])
        for name, watch in monitor.cameras.items():
            source = registered.get(name)
            if source is not None:
                decoded.add_metric([name], source.decoded)
                processed.add_metric([name], source.processed)
                skipped.add_metric([name], source.skipped)
                dropped.add_metric([name], source.dropped)
                if source.motion_gated:
                    gated.add_metric([name], source.gated)
                    motion_frames.add_metric([name], source.motion_frames)
                    motion_area.add_metric([name], source.motion_area)
                reconnects.add_metric([name], source.reconnects)
                stream_errors.add_metric([name], source.errors)
                inference_errors.add_metric([name], source.inference_errors)
                restarts.add_metric([name], source.processing_restarts)
            decoded_fps.add_metric([name], watch.decoded_fps)
            processed_fps.add_metric([name], watch.processed_fps)
            quality.add_metric([name], watch.quality)
            up.add_metric([name], 1.0 if watch.status == CameraState.STREAMING else 0.0)
            for state in CameraState:
                status.add_metric([name, state.value], 1.0 if watch.status == state else 0.0)
            tracks.add_metric([name], watch.tracks)
            info.add_metric([name, watch.source], 1.0)
        yield from (
            decoded, processed, skipped, dropped, gated, motion_frames, motion_area, reconnects,
            stream_errors, inference_errors, restarts, decoded_fps, processed_fps, quality, up,
            status, tracks, info,
        )

    def _models(self) -> Iterator[Metric]:
        monitor = self.monitor
        models = monitor.stats.models()
        labels = ["model"]
        requests = CounterMetricFamily(
            "streamer_model_requests", "Inference requests answered.", labels=labels
        )
        items = CounterMetricFamily(
            "streamer_model_request_items",
            "Items (frames, crops) the answered requests carried; items/requests = mean items "
            "per request.",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "streamer_model_request_failures", "Inference requests that failed.", labels=labels
        )
        model_up = GaugeMetricFamily(
            "streamer_model_up",
            "1 while the model answers its requests; 0 once several in a row failed (its backend "
            "dead or hung), whatever the server's health says.",
            labels=labels,
        )
        request_seconds = CounterMetricFamily(
            "streamer_model_request_seconds", "Time spent in answered requests.", labels=labels
        )
        rate = GaugeMetricFamily(
            "streamer_model_requests_per_second", "Requests per second (recent window).",
            labels=labels,
        )
        inferences = CounterMetricFamily(
            "streamer_triton_inferences", "Inferences Triton ran (statistics API).", labels=labels
        )
        executions = CounterMetricFamily(
            "streamer_triton_executions",
            "Model executions Triton ran; inferences/executions = mean batch size.",
            labels=labels,
        )
        triton_failures = CounterMetricFamily(
            "streamer_triton_inference_failures", "Inferences Triton failed.", labels=labels
        )
        queue = CounterMetricFamily(
            "streamer_triton_queue_seconds", "Time requests waited in Triton's queue.", labels=labels
        )
        compute = CounterMetricFamily(
            "streamer_triton_compute_seconds",
            "Time Triton spent computing requests (input, infer, output).",
            labels=labels,
        )
        batches = CounterMetricFamily(
            "streamer_triton_batch_executions",
            "Model executions per batch size (Triton's dynamic batcher).",
            labels=["model", "batch_size"],
        )
        for name, watch in monitor.models.items():
            model = models.get(name)
            if model is not None:
                requests.add_metric([name], model.requests)
                items.add_metric([name], model.items)
                failures.add_metric([name], model.failures)
                model_up.add_metric([name], 1.0 if model.up else 0.0)
                request_seconds.add_metric([name], model.request_seconds)
            rate.add_metric([name], watch.requests_per_s)
            triton = watch.triton
            if triton is None:
                continue
            inferences.add_metric([name], triton.inferences)
            executions.add_metric([name], triton.executions)
            triton_failures.add_metric([name], triton.failures)
            queue.add_metric([name], triton.queue_s)
            compute.add_metric([name], triton.compute_s)
            for size, count in sorted(triton.batch_executions.items()):
                batches.add_metric([name, str(size)], count)
        yield from (
            requests, items, failures, model_up, request_seconds, rate, inferences, executions,
            triton_failures, queue, compute, batches,
        )

    def _sinks(self) -> Iterator[Metric]:
        labels = ["sink"]
        published = CounterMetricFamily(
            "streamer_sink_published", "Messages the sink delivered.", labels=labels
        )
        dropped = CounterMetricFamily(
            "streamer_sink_dropped", "Messages the sink had to drop.", labels=labels
        )
        errors = CounterMetricFamily("streamer_sink_errors", "Sink errors.", labels=labels)
        buffered = GaugeMetricFamily(
            "streamer_sink_buffered", "Messages waiting in the sink's buffer.", labels=labels
        )
        connected = GaugeMetricFamily(
            "streamer_sink_connected", "1 when the sink is connected.", labels=labels
        )
        for name, stats in self.monitor.sink_stats():
            published.add_metric([name], stats.published)
            dropped.add_metric([name], stats.dropped)
            errors.add_metric([name], stats.errors)
            buffered.add_metric([name], stats.buffered)
            connected.add_metric([name], 1.0 if stats.connected else 0.0)
        yield from (published, dropped, errors, buffered, connected)
