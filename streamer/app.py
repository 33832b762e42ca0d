"""The service: the one owner of what a configuration needs (models, stages, sinks) and of their life.

`run`, `check`, `bench` and `faces` all ask this module, so they never disagree on which models a
configuration serves or which sinks it publishes to.
"""

from __future__ import annotations

import logging

from streamer.analytics.stage import ZoneLineStage
from streamer.config import StreamerConfig
from streamer.core.interfaces import FrameStage
from streamer.core.stats import StatsRegistry
from streamer.identities.stage import IdentityStage
from streamer.metrics.service import MetricsService
from streamer.pipeline import Pipeline
from streamer.publishing.base import Sink
from streamer.publishing.jsonl import JsonlSink
from streamer.publishing.messages import AnalyticsLayout
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink
from streamer.recording import SnapshotStage, snapshot_routes

log = logging.getLogger(__name__)


def build_stages(config: StreamerConfig) -> list[FrameStage]:
    """The stages after tracking that this configuration enables, in processing order."""
    stages: list[FrameStage] = []
    if config.faces.enabled or config.reid.enabled:
        stages.append(IdentityStage(config))
    if any(camera.zones or camera.lines for camera in config.enabled_cameras):
        stages.append(ZoneLineStage(config))
    if config.snapshots.enabled:
        stages.append(SnapshotStage(config))  # last: it pictures the events of every stage before
    return stages


def required_models(config: StreamerConfig) -> list[str]:
    """The repository models this configuration needs, detector first."""
    models = [config.detector.model]
    for stage in build_stages(config):
        models.extend(stage.models)
    return list(dict.fromkeys(models))


def analytics_layout(config: StreamerConfig) -> AnalyticsLayout:
    """The enabled cameras' zones and lines, as the broker sinks announce them at start."""
    cameras = config.enabled_cameras
    return AnalyticsLayout(
        zones={c.name: [z.name for z in c.zones] for c in cameras if c.zones},
        lines={c.name: {x.name: list(x.directions) for x in c.lines} for c in cameras if c.lines},
    )


def build_sinks(config: StreamerConfig) -> list[Sink]:
    sinks: list[Sink] = []
    layout = analytics_layout(config)
    if config.publishing.jsonl.enabled:
        sinks.append(JsonlSink(config.publishing.jsonl))
    if config.publishing.mqtt.enabled:
        sinks.append(MqttSink(config.publishing.mqtt, layout))
    if config.publishing.redis.enabled:
        sinks.append(RedisSink(config.publishing.redis, layout))
    return sinks


class Service:
    """Owns the pipeline and everything around it; start/wait/stop."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.stats = StatsRegistry()
        routes = snapshot_routes(config.snapshots) if config.snapshots.enabled else []
        self.metrics = MetricsService(config, self.stats, routes=routes)
        self.pipeline = Pipeline(
            config,
            registry=self.stats,
            sinks=build_sinks(config),
            stages=build_stages(config),
            observers=[self.metrics],
            keep_images=self.metrics.keep_images,
        )

    async def start(self) -> None:
        await self.metrics.start()  # first, so the page shows cameras connecting
        await self.pipeline.start()

    async def wait(self) -> None:
        await self.pipeline.wait()

    async def stop(self) -> None:
        await self.metrics.stop()
        await self.pipeline.stop()
