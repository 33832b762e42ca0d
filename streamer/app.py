"""The service: the one owner of the pipeline, the metrics server and the camera control, and of
their life (what they are built from is `streamer/assembly.py`'s)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streamer.assembly import Assembly, default_assembly
from streamer.config import StreamerConfig
from streamer.control import CameraApi, CameraControl, ChangeRefused, ReloadReport
from streamer.core.stats import StatsRegistry
from streamer.metrics.service import MetricsService
from streamer.publishing.mqtt import MqttSink
from streamer.snapshots import snapshot_routes

log = logging.getLogger(__name__)


class Service:
    """Owns the pipeline and everything around it; start/wait/stop, and reload (SIGHUP).

    With `config_path`, camera changes (API, reload) are written to that file; without one they
    last until the service stops.
    """

    def __init__(
        self,
        config: StreamerConfig,
        config_path: Path | None = None,
        assembly: Assembly | None = None,
    ) -> None:
        self.config = config
        self.assembly = assembly if assembly is not None else default_assembly()
        self.stats = StatsRegistry()
        self.control = CameraControl(config, config_path, registered=self.assembly.registered())
        api = CameraApi(self.control, config.dashboard, self.stats, rates=self._rates)
        routes = api.routes() if config.dashboard.api.enabled else []
        if config.snapshots.enabled:
            routes.extend(snapshot_routes(config.snapshots))
        self.metrics = MetricsService(config, self.stats, routes=routes)
        self.pipeline = self.assembly.pipeline(
            config,
            registry=self.stats,
            sinks=self.assembly.build_sinks(config),
            stages=self.assembly.build_stages(config),
            observers=[self.metrics],
            keep_images=self.metrics.keep_images,
            stay_when_empty=True,  # cameras may come back through the API or a reload
        )
        self.control.on_change(self.metrics.cameras_changed)
        self.control.on_change(lambda _urls: self.metrics.follow_cameras(self.control.config.cameras))
        self._wire_mqtt_switches(config)

    def _wire_mqtt_switches(self, config: StreamerConfig) -> None:
        """Frigate-style `{camera}/enabled/set`: the MQTT sink calls back into the control layer."""
        if not config.publishing.mqtt.camera_control:
            return
        sinks = [sink for sink in self.pipeline.sinks if isinstance(sink, MqttSink)]

        async def switch(camera: str, enabled: bool) -> None:
            await self.control.set_enabled(camera, enabled, who="MQTT")

        def publish_states(_urls: Sequence[str] = ()) -> None:
            states = {camera.name: camera.enabled for camera in self.control.config.cameras}
            for sink in sinks:
                sink.set_camera_states(states)

        for sink in sinks:
            sink.enable_camera_control(switch)
        publish_states()
        self.control.on_change(publish_states)

    def _rates(self, camera: str) -> tuple[float, float, float | None] | None:
        watch = self.metrics.sampler.cameras.get(camera)
        if watch is None:
            return None
        latency = watch.mean_latency_s
        return watch.processed_fps, watch.decoded_fps, None if latency is None else latency * 1000

    async def start(self) -> None:
        await self.metrics.start()  # first, so the page shows cameras connecting
        await self.pipeline.start()
        self.control.attach(self.pipeline)  # changes are accepted once cameras can be started

    async def wait(self) -> None:
        await self.pipeline.wait()

    async def reload(self) -> ReloadReport | None:
        """Re-read the config file (SIGHUP); a refused reload is logged and changes nothing."""
        try:
            return await self.control.reload(who="SIGHUP")
        except ChangeRefused as exc:
            for line in exc.lines:
                log.error("reload refused, nothing changed: %s", line)
            return None

    async def stop(self) -> None:
        await self.metrics.stop()
        await self.pipeline.stop()
