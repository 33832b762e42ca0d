"""How a configuration becomes components: named factories in registries, selected by config.

* sources by the camera URL's scheme (`""` is a file path),
* the detector by `detector.family`,
* stages (in processing order) and sinks, each built when its settings enable it;
* `Shared`: what one service builds once and hands to several components (the identity gallery,
  which the identities stage fills and the API corrects).

`run`, `check`, `bench` and `faces` all ask an `Assembly`, so they never disagree on which models a
configuration serves or which sinks it publishes to. Adding a source type, a detector family, a
stage or a sink is one class and one `register` line in `default_assembly` (or, for a plugin or a
test, on an `Assembly` of its own: registries are objects, not module state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from streamer.analytics.stage import ZoneLineStage
from streamer.config import FILE_SCHEMES, CameraConfig, Registered, StreamerConfig
from streamer.core.interfaces import (
    Detector,
    DetectorFactory,
    FrameSource,
    FrameStage,
    Sink,
    SourceHooks,
)
from streamer.core.registry import Registry
from streamer.identities.backends import build_gallery
from streamer.identities.decisions import DecisionStore, OperatorGallery, calibration_store_path
from streamer.identities.gallery import InMemoryGallery
from streamer.identities.stage import IdentityStage
from streamer.inference.detector import YoloxDetector
from streamer.pipeline import Pipeline
from streamer.publishing.jsonl import JsonlSink
from streamer.publishing.messages import AnalyticsLayout
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink
from streamer.snapshots import SnapshotStage
from streamer.sources.camera import CameraSource

T = TypeVar("T")

PYAV_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt")


@dataclass(frozen=True)
class Shared:
    """What one service builds once and hands to several of its components; the service owns it
    (`close` at stop, after the pipeline)."""

    gallery: OperatorGallery | None = None
    """The cross-camera identity gallery (with reid enabled): the identities stage assigns global
    ids through it, the API takes the operator's decisions; kept in identities.calibration_store."""

    async def close(self) -> None:
        if self.gallery is not None:
            await self.gallery.close()


@dataclass(frozen=True)
class Component(Generic[T]):
    """How to build a stage or a sink, and whether a configuration wants it.

    `build_shared`, when given, builds it with the service's `Shared` parts; `build` is used
    where there are none (commands and tests that assemble a pipeline of their own)."""

    build: Callable[[StreamerConfig], T]
    enabled: Callable[[StreamerConfig], bool] = lambda _config: True
    build_shared: Callable[[StreamerConfig, Shared], T] | None = None

    def build_with(self, config: StreamerConfig, shared: Shared | None) -> T:
        if shared is not None and self.build_shared is not None:
            return self.build_shared(config, shared)
        return self.build(config)


DetectorBuilder = Callable[[StreamerConfig, Mapping[str, Any]], Detector]
"""A detector family: the configuration and the served models (by name) -> the detector."""


@dataclass
class Assembly:
    """The registries one service is assembled from."""

    sources: Registry[type[FrameSource[CameraConfig]]] = field(
        default_factory=lambda: Registry("camera URL scheme")
    )
    detectors: Registry[DetectorBuilder] = field(default_factory=lambda: Registry("detector family"))
    stages: Registry[Component[FrameStage[CameraConfig]]] = field(
        default_factory=lambda: Registry("stage")
    )
    sinks: Registry[Component[Sink]] = field(default_factory=lambda: Registry("sink"))

    def registered(self) -> Registered:
        """What configuration validation accepts (URL schemes, detector families)."""
        return Registered(
            url_schemes=frozenset(self.sources.names()),
            detector_families=frozenset(self.detectors.names()),
        )

    def build_source(self, camera: CameraConfig, hooks: SourceHooks) -> FrameSource[CameraConfig]:
        return self.sources.get(camera.scheme).build(camera, hooks)

    def probe_source(self, camera: CameraConfig) -> str:
        """Open the camera and read a frame (`streamer check`; blocking)."""
        return self.sources.get(camera.scheme).probe(camera)

    def detector_factory(self, config: StreamerConfig) -> DetectorFactory:
        family = self.detectors.get(config.detector.family)  # an unknown family fails here, early
        return lambda models: family(config, models)

    def build_shared(self, config: StreamerConfig) -> Shared:
        """The parts one service shares between its components (built once per service)."""
        gallery = None
        if config.reid.enabled:
            configured = build_gallery(config.identities.gallery)
            if not isinstance(configured, InMemoryGallery):
                raise TypeError(f"{type(configured).__name__} does not take the operator's decisions")
            path = calibration_store_path(config)
            gallery = OperatorGallery(configured, DecisionStore(path) if path is not None else None)
        return Shared(gallery=gallery)

    def build_stages(
        self, config: StreamerConfig, shared: Shared | None = None
    ) -> list[FrameStage[CameraConfig]]:
        """The stages this configuration enables, in processing order (with the service's shared
        parts, when given)."""
        return [
            entry.build_with(config, shared) for _, entry in self.stages.items() if entry.enabled(config)
        ]

    def build_sinks(self, config: StreamerConfig, shared: Shared | None = None) -> list[Sink]:
        return [
            entry.build_with(config, shared) for _, entry in self.sinks.items() if entry.enabled(config)
        ]

    def required_models(self, config: StreamerConfig) -> list[str]:
        """The repository models this configuration needs, detector first."""
        models = [config.detector.model]
        for stage in self.build_stages(config):
            models.extend(stage.models)
        return list(dict.fromkeys(models))

    def pipeline(self, config: StreamerConfig, **options: Any) -> Pipeline:
        """A pipeline whose sources and detector come from these registries; stages, sinks and
        the other `Pipeline` options are passed as given (none unless given)."""
        return Pipeline(
            config, sources=self.build_source, detector=self.detector_factory(config), **options
        )


def analytics_layout(config: StreamerConfig) -> AnalyticsLayout:
    """The enabled cameras' zones and lines, as the broker sinks announce them at start."""
    cameras = config.enabled_cameras
    return AnalyticsLayout(
        zones={c.name: [z.name for z in c.zones] for c in cameras if c.zones},
        lines={c.name: {x.name: list(x.directions) for x in c.lines} for c in cameras if c.lines},
    )


def default_assembly() -> Assembly:
    """What the service is made of."""
    assembly = Assembly()
    assembly.sources.register((*FILE_SCHEMES, *PYAV_STREAM_SCHEMES), CameraSource)
    assembly.detectors.register(
        "yolox", lambda config, models: YoloxDetector.from_models(models, config.detector)
    )
    # Stages run in this order; event pictures last, so they picture every stage's events.
    assembly.stages.register(
        "identities",
        Component(
            IdentityStage,
            enabled=lambda config: config.faces.enabled or config.reid.enabled,
            build_shared=lambda config, shared: IdentityStage(config, gallery=shared.gallery),
        ),
    )
    # Always there (a frame of a camera without zones costs one lookup): a camera added or
    # changed at runtime may bring zones and lines.
    assembly.stages.register("zones", Component(ZoneLineStage))
    assembly.stages.register(
        "snapshots", Component(SnapshotStage, enabled=lambda config: config.snapshots.enabled)
    )
    assembly.sinks.register(
        "jsonl",
        Component(lambda c: JsonlSink(c.publishing.jsonl), enabled=lambda c: c.publishing.jsonl.enabled),
    )
    assembly.sinks.register(
        "mqtt",
        Component(
            lambda c: MqttSink(c.publishing.mqtt, analytics_layout(c)),
            enabled=lambda c: c.publishing.mqtt.enabled,
        ),
    )
    assembly.sinks.register(
        "redis",
        Component(
            lambda c: RedisSink(c.publishing.redis, analytics_layout(c)),
            enabled=lambda c: c.publishing.redis.enabled,
        ),
    )
    return assembly


# The default assembly's answers, for the commands and tests that need one of them.


def build_stages(config: StreamerConfig) -> list[FrameStage[CameraConfig]]:
    return default_assembly().build_stages(config)


def build_sinks(config: StreamerConfig) -> list[Sink]:
    return default_assembly().build_sinks(config)


def required_models(config: StreamerConfig) -> list[str]:
    return default_assembly().required_models(config)


def build_pipeline(config: StreamerConfig, **options: Any) -> Pipeline:
    return default_assembly().pipeline(config, **options)


def registered() -> Registered:
    return default_assembly().registered()
