"""The sampler: what the pipeline is doing, per camera and model, between two reads of the registry.

Per-result figures (latency sums, track counts) come from `observe()`, called for every result;
everything else is read from the stats registry by the sampler task, which derives rates,
connection quality and the sparkline history, and polls Triton's statistics API. The state view
and the Prometheus exporter read what it keeps; it knows neither.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from streamer.config import MetricsConfig, StreamerConfig
from streamer.core.frames import FrameResult
from streamer.core.redaction import redact_url, scrub, url_secrets
from streamer.core.stats import CameraState, CameraStats, SinkStats, StatsKind, StatsRegistry
from streamer.core.tasks import cancel_and_wait
from streamer.inference.statistics import TritonStatistics

log = logging.getLogger(__name__)

NOT_STREAMING_STATES = {CameraState.FINISHED, CameraState.STOPPED}  # an ended file is no problem
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
    status: CameraState = CameraState.CONNECTING
    detail: str | None = None
    decoded_fps: float = 0.0
    processed_fps: float = 0.0
    mean_latency_s: float | None = None
    quality: float = 1.0
    tracks: int = 0
    latency_sum_s: float = 0.0  # cumulative over every observed result
    latency_count: int = 0
    health: deque[tuple[float, bool]] = field(default_factory=deque)
    # (wall-clock time, state, detail) of the latest state changes, oldest first
    state_history: deque[tuple[float, CameraState, str | None]] = field(
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


class Sampler:
    """The sampler task and what it keeps per camera and model; start()/stop()."""

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
        self.secrets = url_secrets(camera.url for camera in config.cameras)
        self.history_points = history_points
        self.cameras: dict[str, CameraWatch] = {
            camera.name: self._watch(camera.name, redact_url(camera.url))
            for camera in config.enabled_cameras
        }
        self._seen: dict[str, CameraStats] = {}  # the stats object each camera registered last
        self.on_camera_added: list[Callable[[str], None]] = []
        self.on_camera_removed: list[Callable[[str], None]] = []
        self.on_figures_reset: list[Callable[[str], None]] = []  # restarted or removed
        self.models: dict[str, ModelWatch] = {}
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
        registered and is gone is forgotten. `on_figures_reset` hears of both, `on_camera_added`
        and `on_camera_removed` of cameras that come and go. Before the pipeline runs,
        configured cameras not registered yet show as connecting; once it runs
        (`pipeline_running`, after a change at runtime) an unregistered camera is gone."""
        registered = self.stats.cameras()
        for name, stats in registered.items():
            watch = self.cameras.get(name)
            restarted = name in self._seen and self._seen[name] is not stats
            if watch is None or restarted:
                if watch is not None:
                    self._notify(self.on_figures_reset, name)
                self.cameras[name] = self._watch(name, stats.source)
                if watch is not None:  # restarted with new settings: its state history goes on
                    self.cameras[name].state_history.extend(watch.state_history)
                self._notify(self.on_camera_added, name)
            self._seen[name] = stats
        for name in list(self.cameras):
            if (name in self._seen or pipeline_running) and name not in registered:
                self._seen.pop(name, None)
                del self.cameras[name]
                self._notify(self.on_figures_reset, name)
                self._notify(self.on_camera_removed, name)

    @staticmethod
    def _notify(callbacks: list[Callable[[str], None]], name: str) -> None:
        for callback in callbacks:
            callback(name)

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

    def wake(self) -> None:
        """Release everyone waiting in next_update()."""
        event, self._updated = self._updated, asyncio.Event()
        event.set()

    # -- per result ---------------------------------------------------------------------------

    def observe(self, result: FrameResult) -> bool:
        """Count the result's latency and tracks; False for a camera it does not know (one
        removed a moment ago), whose figures are better not recorded anywhere."""
        if result.camera not in self.cameras:
            self.sync_cameras()  # a camera added at runtime, seen before the next sample
        watch = self.cameras.get(result.camera)
        if watch is None:
            return False
        watch.latency_sum_s += result.latency_s
        watch.latency_count += 1
        watch.tracks = len(result.tracks)
        return True

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

    def _sample_camera(self, watch: CameraWatch, now: float) -> None:
        source = self.stats.cameras().get(watch.name)
        if source is None:
            watch.status, watch.detail = CameraState.CONNECTING, None
            return
        status, detail = source.state, scrub(source.detail, self.secrets)
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

    # -- what readers of the registry share ---------------------------------------------------

    def sink_stats(self) -> Iterator[tuple[str, SinkStats]]:
        """(unique name, SinkStats) per sink; a sink that fails to report is skipped."""
        try:
            sinks = self.stats.read(StatsKind.SINK)
        except Exception:
            log.debug("a sink failed to report stats", exc_info=True)
            return
        yield from sinks.items()
