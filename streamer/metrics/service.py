"""The metrics side of the service: sampler, state view, Prometheus exporter, live view and HTTP
server behind one start/stop.

Built before the pipeline (the pipeline takes it as observer and keep_images hook); it reads what
the pipeline's components report through the stats registry, never the pipeline itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from streamer.config import CameraConfig, StreamerConfig
from streamer.core.frames import FrameResult
from streamer.core.stats import StatsRegistry
from streamer.metrics.live_view import LiveViewStore
from streamer.metrics.prometheus import PrometheusExporter
from streamer.metrics.sampler import Sampler
from streamer.metrics.server import DashboardServer
from streamer.metrics.state_view import StateView

log = logging.getLogger(__name__)


class MetricsService:
    """Pass it as a pipeline observer and `keep_images=service.keep_images`; start()/stop()."""

    def __init__(
        self,
        config: StreamerConfig,
        stats: StatsRegistry,
        routes: Sequence[web.AbstractRouteDef] = (),
    ) -> None:
        self.config = config
        self.sampler = Sampler(
            config, config.metrics, history_points=config.dashboard.history_points, stats=stats
        )
        self.prometheus = PrometheusExporter(self.sampler, config.metrics)
        self.state_view = StateView(
            self.sampler, config.dashboard, config.metrics, events_enabled=config.snapshots.enabled
        )
        self.live_view = LiveViewStore(
            config.dashboard, [camera.name for camera in config.enabled_cameras]
        )
        self.live_view.follow_cameras(config.cameras)
        self.sampler.on_camera_added.append(self.live_view.add_camera)
        self.sampler.on_camera_removed.append(self.live_view.forget_camera)
        self.server: DashboardServer | None = (
            DashboardServer(
                self.sampler, self.state_view, self.prometheus.registry, self.live_view,
                config.dashboard, config.metrics, routes=routes,
            )
            if config.dashboard.enabled
            else None
        )

    @property
    def url(self) -> str | None:
        """Base URL of the dashboard once started, None when it is disabled."""
        return self.server.url if self.server is not None and self.server.port is not None else None

    def observe(self, result: FrameResult) -> None:
        if self.server is None:
            return
        if self.sampler.observe(result):
            self.prometheus.observe(result)
        self.live_view.observe(result)

    def cameras_changed(self, urls: Sequence[str] = ()) -> None:
        """Cameras were added or removed at runtime: learn new URLs' secrets, follow the registry."""
        self.sampler.learn_secrets(urls)
        self.sampler.sync_cameras(pipeline_running=True)

    def follow_cameras(self, cameras: Sequence[CameraConfig]) -> None:
        """The cameras' settings changed at runtime: the live view draws their current zones and lines."""
        self.live_view.follow_cameras(cameras)

    def keep_images(self, camera: str) -> bool:
        return self.server is not None and self.live_view.wants_image(camera)

    async def start(self) -> None:
        """Serve before the pipeline starts, so the page shows cameras connecting."""
        if self.server is None:
            return
        self.sampler.start()
        try:
            await self.server.start()
        except BaseException:
            await self.sampler.stop()
            raise

    async def stop(self) -> None:
        if self.server is None:
            return
        await self.server.stop()
        await self.sampler.stop()
