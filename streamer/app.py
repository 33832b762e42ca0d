"""The service: builds the pipeline, its sinks and its side services from the configuration."""

from __future__ import annotations

import logging

from streamer.config import StreamerConfig
from streamer.identities.stage import build_identity_stages, identity_models
from streamer.metrics.service import MetricsService
from streamer.pipeline import Pipeline
from streamer.publishing.base import Sink
from streamer.publishing.jsonl import JsonlSink
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink

log = logging.getLogger(__name__)


def required_models(config: StreamerConfig) -> list[str]:
    """The repository models this configuration needs, detector first."""
    return [config.detector.model, *identity_models(config)]


def build_sinks(config: StreamerConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.publishing.jsonl.enabled:
        sinks.append(JsonlSink(config.publishing.jsonl))
    if config.publishing.mqtt.enabled:
        sinks.append(MqttSink(config.publishing.mqtt))
    if config.publishing.redis.enabled:
        sinks.append(RedisSink(config.publishing.redis))
    return sinks


class Service:
    """Owns the pipeline and everything around it; start/wait/stop."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.metrics = MetricsService(config)
        self.pipeline = Pipeline(
            config,
            sinks=build_sinks(config),
            extra_models=required_models(config)[1:],
            stages=build_identity_stages(config),
            observers=[self.metrics],
            keep_images=self.metrics.keep_images,
        )

    async def start(self) -> None:
        await self.metrics.start(self.pipeline)  # first, so the page shows cameras connecting
        await self.pipeline.start()

    async def wait(self) -> None:
        await self.pipeline.wait()

    async def stop(self) -> None:
        await self.metrics.stop()
        await self.pipeline.stop()
