"""The state view: builds the `/api/state` document (`ServiceState`) from the sampler and the registry."""

from __future__ import annotations

import time

from streamer.config import DashboardConfig, MetricsConfig
from streamer.core.redaction import scrub
from streamer.core.stats import (
    AnalyticsStats,
    CameraStats,
    IdentityStoreStats,
    ModelStats,
    StatsKind,
    inference_problems,
)
from streamer.metrics.sampler import MS_PER_S, CameraWatch, ModelWatch, Sampler
from streamer.metrics.state import (
    AnalyticsFigures,
    ApiAccess,
    CameraFigures,
    IdentityStoreFigures,
    InferenceFigures,
    ModelFigures,
    PartFigures,
    ServiceState,
    SinkFigures,
    Sparklines,
    StateChange,
    ZoneFigures,
)


def mutations_allowed(settings: DashboardConfig) -> bool:
    """Whether the page offers camera controls: the API is served and changes can be accepted
    (a token is set, or loopback clients may change cameras without one)."""
    api = settings.api
    return api.enabled and (settings.token is not None or api.allow_unauthenticated_loopback)


class StateView:
    """`state()` is everything the dashboard shows; it never holds a secret."""

    def __init__(
        self,
        sampler: Sampler,
        dashboard: DashboardConfig,
        metrics: MetricsConfig,
        events_enabled: bool = False,
        identities_enabled: bool = False,
    ) -> None:
        self.sampler = sampler
        self.dashboard = dashboard
        self.metrics = metrics
        self.events_enabled = events_enabled  # the events list and pictures are served (snapshots)
        self.identities_enabled = identities_enabled  # /api/identities is served (reid)

    def state(self) -> ServiceState:
        sampler = self.sampler
        analytics = self._analytics_by_camera()
        registered, models = sampler.stats.cameras(), sampler.stats.models()
        now = time.time()
        return ServiceState(
            time=now,
            uptime_s=round(now - sampler.started_at, 1),
            sample_interval_s=sampler.settings.sample_interval_s,
            inference=self._inference(),
            cameras=[
                self._camera(watch, registered.get(watch.name), analytics.get(watch.name))
                for watch in sampler.cameras.values()
            ],
            models=[
                self._model(watch, models.get(watch.name), sampler.secrets)
                for watch in sampler.models.values()
            ],
            sinks=[
                SinkFigures(
                    name=name, connected=stats.connected, published=stats.published,
                    buffered=stats.buffered, dropped=stats.dropped, errors=stats.errors,
                )
                for name, stats in sampler.sink_stats()
            ],
            identity_store=self._identity_store(),
            parts=[
                PartFigures(name=name, state=part.state.value, problem=scrub(part.problem, sampler.secrets))
                for name, part in sampler.stats.parts().items()
            ],
            live_view_interval_s=1.0 / self.dashboard.live_view_max_fps,
            metrics_enabled=self.metrics.enabled,
            api=ApiAccess(
                enabled=self.dashboard.api.enabled, mutations=mutations_allowed(self.dashboard)
            ),
            events_enabled=self.events_enabled,
            identities_enabled=self.identities_enabled,
        )

    @staticmethod
    def _camera(
        watch: CameraWatch, stats: CameraStats | None, analytics: AnalyticsFigures | None
    ) -> CameraFigures:
        latency = watch.mean_latency_s
        figures = CameraFigures(
            name=watch.name,
            source=watch.source,
            status=watch.status,
            detail=watch.detail,
            decoded_fps=round(watch.decoded_fps, 2),
            processed_fps=round(watch.processed_fps, 2),
            latency_ms=None if latency is None else round(latency * MS_PER_S, 1),
            quality=round(watch.quality, 3),
            tracks=watch.tracks,
            history=Sparklines(fps=list(watch.fps_history), latency_ms=list(watch.latency_history)),
            state_history=[
                StateChange(time=round(at, 3), status=status, detail=detail)
                for at, status, detail in watch.state_history
            ],
            analytics=analytics or AnalyticsFigures(),
        )
        if stats is not None:  # counts since the camera started; zero before it registers
            figures.decoded = stats.decoded
            figures.processed = stats.processed
            figures.dropped = stats.dropped
            figures.skipped = stats.skipped
            figures.motion_gated = stats.motion_gated
            figures.gated = stats.gated
            figures.motion_area = round(stats.motion_area, 4)
            figures.reconnects = stats.reconnects
            figures.stream_errors = stats.errors
            figures.inference_errors = stats.inference_errors
            figures.processing_restarts = stats.processing_restarts
        return figures

    @staticmethod
    def _model(watch: ModelWatch, model: ModelStats | None, secrets: list[str]) -> ModelFigures:
        triton = watch.triton
        return ModelFigures(
            name=watch.name,
            requests=model.requests if model else 0,
            items=model.items if model else 0,
            failures=model.failures if model else 0,
            up=model.up if model else False,
            last_error=scrub(model.last_error, secrets) if model and not model.up else None,
            requests_per_s=round(watch.requests_per_s, 2),
            max_batch_size=model.max_batch_size if model else None,
            requests_in_flight=model.requests_in_flight if model else None,
            recent_batch=_rounded(watch.recent_batch, 2),
            queue_ms=_rounded(watch.recent_queue_ms, 1),
            compute_ms=_rounded(watch.recent_compute_ms, 1),
            batch_executions={
                str(size): count
                for size, count in sorted((triton.batch_executions if triton else {}).items())
            },
        )

    def _analytics_by_camera(self) -> dict[str, AnalyticsFigures]:
        """Per camera: occupancy and event counts per zone, crossings per line and direction."""
        cameras: dict[str, AnalyticsFigures] = {}

        def zone(camera: str, name: str) -> ZoneFigures:
            figures = cameras.setdefault(camera, AnalyticsFigures())
            return figures.zones.setdefault(name, ZoneFigures())

        for stats in self.sampler.stats.read(StatsKind.ANALYTICS).values():
            if not isinstance(stats, AnalyticsStats):
                continue
            for (camera, name), occupancy in sorted(stats.occupancy.items()):
                zone(camera, name).occupancy = occupancy
            for (camera, name, kind), count in sorted(stats.zone_events.items()):
                zone(camera, name).events[kind] = count
            for (camera, line, direction), count in sorted(stats.line_crossings.items()):
                lines = cameras.setdefault(camera, AnalyticsFigures()).lines
                lines.setdefault(line, {})[direction] = count
        return cameras

    def _identity_store(self) -> IdentityStoreFigures | None:
        store = next(iter(self.sampler.stats.read(StatsKind.IDENTITY_STORE).values()), None)
        if not isinstance(store, IdentityStoreStats):
            return None
        down_since = store.down_since_monotonic
        return IdentityStoreFigures(
            backend=store.backend,
            endpoint=store.endpoint,
            instance=store.instance,
            connected=store.connected,
            down_for_s=None if down_since is None else round(time.monotonic() - down_since, 1),
            last_error=store.last_error,
            outages=store.outages,
            sent=store.sent,
            applied=store.applied,
            queued=store.queued,
            dropped=store.dropped,
            merges=store.merges,
            snapshots=store.snapshots,
        )

    def _inference(self) -> InferenceFigures | None:
        server = self.sampler.stats.server()
        if server is None:
            return None
        models = self.sampler.stats.models()
        problems = inference_problems(server, models)
        down_since = server.down_since_monotonic
        if server.up:  # the server looks fine: how long its first failing model has been down
            down_since = min(
                (m.down_since_monotonic for m in models.values() if m.down_since_monotonic is not None),
                default=None,
            )
        return InferenceFigures(
            mode=server.mode,
            up=not problems,  # frames can be processed: the server and every model answer
            problem=scrub(problems[0], self.sampler.secrets) if problems else None,
            restarts=server.restarts,
            down_for_s=None if down_since is None else round(time.monotonic() - down_since, 1),
        )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
