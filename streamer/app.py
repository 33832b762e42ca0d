"""The service: builds the pipeline, its sinks and its side services from the configuration."""

from __future__ import annotations

import logging

from streamer.config import StreamerConfig
from streamer.pipeline import Pipeline
from streamer.publishing.base import Sink
from streamer.publishing.jsonl import JsonlSink

log = logging.getLogger(__name__)


def required_models(config: StreamerConfig) -> list[str]:
    """The repository models this configuration needs, detector first."""
    return [config.detector.model]


def build_sinks(config: StreamerConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.publishing.jsonl.enabled:
        sinks.append(JsonlSink(config.publishing.jsonl))
    return sinks


class Service:
    """Owns the pipeline and everything around it; start/wait/stop."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.pipeline = Pipeline(
            config, sinks=build_sinks(config), extra_models=required_models(config)[1:]
        )

    async def start(self) -> None:
        await self.pipeline.start()

    async def wait(self) -> None:
        await self.pipeline.wait()

    async def stop(self) -> None:
        await self.pipeline.stop()
