"""Real RTSP cameras (GStreamer's RTSP server): a camera that dies comes back, the others never pause."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.frames import FrameResult
from streamer.core.stats import CameraState
from streamer.inference.server import EmbeddedTritonServer
from tests.support.rtsp import RtspServerFactory

OUTAGE_S = 3.0
WAIT_LIMIT_S = 30.0


class Arrivals:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"flaky": [], "steady": []}

    def observe(self, result: FrameResult) -> None:
        self.times[result.camera].append(time.monotonic())

    async def wait_for(self, camera: str, count: int, after: float = 0.0) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while sum(t > after for t in self.times[camera]) < count:
            assert time.monotonic() < deadline, f"{camera}: no frames after {WAIT_LIMIT_S}s"
            await asyncio.sleep(0.05)


async def test_camera_reconnects_after_its_server_restarts_while_another_keeps_going(
    embedded_triton: EmbeddedTritonServer,
    sample_clip: Path,
    rtsp_server_factory: RtspServerFactory,
) -> None:
    flaky_server = rtsp_server_factory({"/cam": sample_clip})
    steady_server = rtsp_server_factory({"/cam": sample_clip})
    reconnect = {"initial_delay_s": 0.2, "max_delay_s": 1.0}
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": embedded_triton.grpc_url},
            "publishing": {"jsonl": {"enabled": False}},
            "cameras": [
                {"name": "flaky", "url": flaky_server.url("/cam"), "read_timeout_s": 2,
                 "open_timeout_s": 2, "reconnect": reconnect},
                {"name": "steady", "url": steady_server.url("/cam"), "read_timeout_s": 2,
                 "open_timeout_s": 2, "reconnect": reconnect},
            ],
        }
    )
    arrivals = Arrivals()
    pipeline = build_pipeline(config, observers=[arrivals])
    await pipeline.start()
    try:
        await arrivals.wait_for("flaky", 5)
        await arrivals.wait_for("steady", 5)

        flaky_server.stop()  # the camera loses power
        outage_started = time.monotonic()
        flaky = pipeline.cameras["flaky"]
        while flaky.source.status is CameraState.STREAMING:
            assert time.monotonic() - outage_started < WAIT_LIMIT_S, "dead camera never noticed"
            await asyncio.sleep(0.05)
        await asyncio.sleep(OUTAGE_S)
        steady_during_outage = [t for t in arrivals.times["steady"] if t > outage_started]

        flaky_server.start()  # and comes back on the same address
        restarted = time.monotonic()
        await arrivals.wait_for("flaky", 5, after=restarted)
    finally:
        await pipeline.stop()

    assert flaky.source.stats.reconnects >= 1
    # the healthy camera delivered results throughout the other one's outage
    window = time.monotonic() - outage_started
    assert len(steady_during_outage) >= 5
    seconds_with_results = {int(t - outage_started) for t in steady_during_outage}
    assert seconds_with_results >= set(range(int(OUTAGE_S))), (window, seconds_with_results)
    assert pipeline.cameras["steady"].source.stats.reconnects == 0
