"""A model's backend dies or hangs under a server that still says ready (issue 25, finding 1).

`kill -9` or `kill -STOP` of the embedded server's `triton_python_backend_stub` processes: every
request of the model fails while the server's health endpoint answers "ready". The model's own
requests mark it down, the embedded server is restarted, and meanwhile no health surface says the
service is fine: `/readyz`, `inference.up` of the dashboard's state, the sinks' availability.
An external server is not this service's to restart: its model is reported down until it answers.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamer.assembly import build_pipeline
from streamer.config import CameraConfig, StreamerConfig
from streamer.core.events import CameraStatusEvent, Event
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, Sink, TrackBook
from streamer.inference.server import EmbeddedTritonServer, free_port
from streamer.metrics.service import MetricsService
from streamer.pipeline import Pipeline
from streamer.publishing.messages import AVAILABLE_DEGRADED, AVAILABLE_ONLINE
from tests.chaos.conftest import Arrivals, backend_stubs, signal_all, wait_until

CAMERAS = ("north", "south")
DETECTOR = "person_detector"
RECOVERY_LIMIT_S = 30.0  # generous for a loaded 2-core CI machine; the soak reports real times
# The model is marked down after a few failed requests (each fails within about a second): a
# surface may say "ready" this long after the last frame, never longer.
DETECTION_GRACE_S = 4.0
STOP_LIMIT_S = 10.0


class NeedsPictures(FrameStage[CameraConfig]):
    """A stage that reads the full-size picture (as event pictures and faces do): every camera
    thread converts its frames with PyAV, holding FFmpeg state in thread-locals. Restarting the
    server with that going on must not hang (it did, with a `preexec_fn`)."""

    name = "pictures"
    needs_image = True

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        assert frame.image is not None


class Availability(Sink):
    """What the pipeline tells the MQTT and Redis sinks about its availability."""

    name = "availability"

    def __init__(self) -> None:
        self.current = AVAILABLE_ONLINE

    def publish_frame(self, result: FrameResult) -> None:
        pass

    def publish_events(self, events: Sequence[Event]) -> None:
        pass

    def publish_status(self, status: CameraStatusEvent) -> None:
        pass

    def publish_availability(self, availability: str) -> None:
        self.current = availability

    async def stop(self) -> None:
        pass


@dataclass
class Surfaces:
    """Every health surface, sampled together with the time of the last processed frame."""

    pipeline: Pipeline
    metrics: MetricsService
    availability: Availability
    arrivals: Arrivals
    samples: list[dict[str, Any]] = field(default_factory=list)

    async def sample(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.metrics.url}/readyz") as response:
            ready = response.status == 200
            body = await response.json()
        last = max((max(t, default=0.0) for t in self.arrivals.times.values()), default=0.0)
        state = self.metrics.server.state() if self.metrics.server is not None else {}
        sample = {
            "at": time.monotonic(),
            "since_frame_s": time.monotonic() - last,
            "readyz": ready,
            "reasons": body["reasons"],
            "inference_up": (state.get("inference") or {}).get("up"),
            "restarts": body["inference"].get("restarts", 0),
            "available": self.availability.current,
        }
        self.samples.append(sample)
        return sample

    async def watch(self, until: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not until.is_set():
                await self.sample(session)
                await asyncio.sleep(0.1)

    def claimed_fine_without_frames(self, after: float, restarts: int = 0) -> list[dict[str, Any]]:
        """Samples taken after `after` that said "fine" while no frame had come for longer than
        DETECTION_GRACE_S: readiness or availability, or inference up before the server was
        brought back (once restarted, inference is up a moment before its first frame is out)."""
        return [
            s for s in self.samples
            if s["at"] > after and s["since_frame_s"] > DETECTION_GRACE_S
            and (
                s["readyz"] or s["available"] == AVAILABLE_ONLINE
                or (s["inference_up"] and s["restarts"] == restarts)
            )
        ]


def config_for(triton: dict[str, object], clip: Path) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"health_interval_s": 0.5, "request_timeout_s": 3.0, **triton},
            "publishing": {"jsonl": {"enabled": False}},
            "metrics": {"stall_after_s": 2.0, "sample_interval_s": 0.2},
            "dashboard": {"port": 0},
            "cameras": [{"name": name, "url": str(clip), "loop": True} for name in CAMERAS],
        }
    )


async def started(config: StreamerConfig) -> Surfaces:
    arrivals, availability = Arrivals(), Availability()
    pipeline = build_pipeline(
        config, sinks=[availability], stages=[NeedsPictures()], observers=[arrivals]
    )
    metrics = MetricsService(config, pipeline.registry)
    await metrics.start()
    try:
        await pipeline.start()
    except BaseException:
        await metrics.stop()
        raise
    return Surfaces(pipeline, metrics, availability, arrivals)


@pytest.mark.parametrize("fault", ["kill", "stop"], ids=["kill-9", "kill-STOP"])
async def test_a_dead_or_hung_backend_restarts_the_embedded_server_and_no_surface_says_ready(
    model_repository: Path, sample_clip: Path, fault: str
) -> None:
    config = config_for(
        {"mode": "embedded", "model_repository": str(model_repository), "ort_threads": 1}, sample_clip
    )
    surfaces = await started(config)
    pipeline, arrivals = surfaces.pipeline, surfaces.arrivals
    done = asyncio.Event()
    watcher = asyncio.create_task(surfaces.watch(done))
    stubs: list[int] = []
    try:
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 5)
        await wait_until(lambda: bool(surfaces.samples) and surfaces.samples[-1]["readyz"], "ready")
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        stubs = backend_stubs(server.pid)
        assert stubs, "the embedded server runs its models in Python-backend stubs"
        signal_all(stubs, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        faulted = time.monotonic()

        await wait_until(
            lambda: any(not s["readyz"] and s["at"] > faulted for s in surfaces.samples),
            "readiness to say not ready",
        )
        for camera in CAMERAS:
            resumed = await arrivals.wait_for(camera, 3, after=faulted + DETECTION_GRACE_S)
            assert resumed - faulted < RECOVERY_LIMIT_S
        await wait_until(lambda: surfaces.samples[-1]["readyz"], "ready again")
        stats = pipeline.registry.server()
        assert stats is not None and stats.up and stats.restarts == 1
        assert pipeline.registry.models()[DETECTOR].up
        not_ready = [s for s in surfaces.samples if s["at"] > faulted and not s["readyz"]]
        assert any(f"model {DETECTOR} " in " ".join(s["reasons"]) for s in not_ready), not_ready
        assert any(s["available"] == AVAILABLE_DEGRADED for s in not_ready)
        claimed = surfaces.claimed_fine_without_frames(after=faulted)
        assert claimed == [], "\n".join(map(str, claimed))

        if fault == "stop":  # hung again, and stopped before the supervisor noticed: bounded
            new_server = pipeline.triton.server
            assert new_server is not None and new_server.pid is not None
            stubs = backend_stubs(new_server.pid)
            signal_all(stubs, signal.SIGSTOP)
            stopping = time.monotonic()
            done.set()
            await pipeline.stop()
            assert time.monotonic() - stopping <= STOP_LIMIT_S
            assert backend_stubs(new_server.pid) == [], "no stub is left behind"
    finally:
        done.set()
        await watcher
        signal_all(stubs, signal.SIGCONT)
        await pipeline.stop()
        await surfaces.metrics.stop()


async def test_an_external_servers_dead_backend_is_reported_per_model_until_it_answers(
    model_repository: Path, sample_clip: Path
) -> None:
    port = free_port()
    server = EmbeddedTritonServer(model_repository, [DETECTOR], ort_threads=1, grpc_port=port)
    await server.start()
    config = config_for({"mode": "external", "url": f"127.0.0.1:{port}"}, sample_clip)
    surfaces = await started(config)
    pipeline, arrivals = surfaces.pipeline, surfaces.arrivals
    try:
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 5)
        assert server.pid is not None
        signal_all(backend_stubs(server.pid), signal.SIGKILL)
        faulted = time.monotonic()
        model = pipeline.registry.models()[DETECTOR]
        await wait_until(lambda: not model.up, "the model reported down")
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(1.0)  # the supervisor had its chance to act: it must not
            sample = await surfaces.sample(session)
        stats = pipeline.registry.server()
        assert stats is not None and stats.up and stats.restarts == 0, "not this service's to restart"
        assert not sample["readyz"] and not sample["inference_up"]
        assert any(r.startswith(f"model {DETECTOR} down for ") for r in sample["reasons"]), sample

        await server.stop(grace_s=0.0)  # its operator restarts it (it would not stop when asked)
        await server.start()
        restarted = time.monotonic()
        for camera in CAMERAS:
            resumed = await arrivals.wait_for(camera, 3, after=restarted)
            assert resumed - faulted < RECOVERY_LIMIT_S + (restarted - faulted)
        await wait_until(lambda: model.up, "the model answering again")
    finally:
        await pipeline.stop()
        await surfaces.metrics.stop()
        await server.stop()
