"""One camera's faults never touch the others: a crash in its processing, a frozen RTSP server."""

from __future__ import annotations

import time
from pathlib import Path

from streamer.assembly import build_pipeline
from streamer.config import CameraConfig, StreamerConfig
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, TrackBook
from streamer.core.stats import CameraState
from streamer.inference.server import EmbeddedTritonServer
from tests.chaos.conftest import Arrivals, wait_until
from tests.support.rtsp import RtspServerFactory

RESUME_LIMIT_S = 10.0
FAULTY, STEADY = "faulty", "steady"


class Crashes(FrameStage[CameraConfig]):
    """A stage with a bug that only one camera's frames trigger, twice."""

    name = "buggy"
    needs_image = False

    def __init__(self, camera: str, on_frames: set[int]) -> None:
        self.camera = camera
        self.remaining = set(on_frames)
        self.crashed_at: list[float] = []

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        if frame.camera == self.camera and self.remaining and frame.index >= min(self.remaining):
            self.remaining.discard(min(self.remaining))
            self.crashed_at.append(time.monotonic())
            raise KeyError("a bug that only this camera's frames trigger")


async def test_a_crash_in_one_cameras_processing_restarts_it_and_the_other_never_pauses(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path
) -> None:
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": embedded_triton.grpc_url},
            "publishing": {"jsonl": {"enabled": False}},
            "cameras": [{"name": n, "url": str(sample_clip), "loop": True} for n in (FAULTY, STEADY)],
        }
    )
    buggy = Crashes(FAULTY, on_frames={20, 40})
    arrivals = Arrivals()
    pipeline = build_pipeline(config, stages=[buggy], observers=[arrivals])
    await pipeline.start()
    try:
        await arrivals.wait_for(STEADY, 5)
        await wait_until(lambda: len(buggy.crashed_at) == 2, "both crashes")
        resumed = await arrivals.wait_for(FAULTY, 3, after=buggy.crashed_at[-1])
        now = time.monotonic()
        stats = pipeline.registry.cameras()
    finally:
        await pipeline.stop()

    assert resumed - buggy.crashed_at[-1] < RESUME_LIMIT_S
    assert stats[FAULTY].processing_restarts == 2
    assert stats[STEADY].processing_restarts == 0
    # The steady camera (10 fps) delivered throughout: never a second without a result.
    assert arrivals.longest_gap(STEADY, buggy.crashed_at[0], now) < 1.0


async def test_frozen_rtsp_camera_reads_stalled_then_streaming_after_it_thaws(
    embedded_triton: EmbeddedTritonServer,
    sample_clip: Path,
    rtsp_server_factory: RtspServerFactory,
) -> None:
    server = rtsp_server_factory({"/cam": sample_clip})
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": embedded_triton.grpc_url},
            "publishing": {"jsonl": {"enabled": False}},
            "metrics": {"stall_after_s": 1.5},
            "cameras": [
                {"name": "gate", "url": server.url("/cam"), "read_timeout_s": 5, "open_timeout_s": 3,
                 "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 1.0}},
            ],
        }
    )
    arrivals = Arrivals()
    states: list[CameraState] = []
    pipeline = build_pipeline(config, observers=[arrivals])
    await pipeline.start()
    gate = pipeline.registry.cameras()["gate"]
    try:
        await arrivals.wait_for("gate", 5)
        server.pause()
        frozen = time.monotonic()
        await wait_until(lambda: gate.state == CameraState.STALLED, "stalled", limit_s=10)
        states.append(gate.state)
        assert "no frame decoded" in (gate.detail or "")
        server.resume()
        thawed = time.monotonic()
        await arrivals.wait_for("gate", 3, after=thawed)
        await wait_until(lambda: gate.state == CameraState.STREAMING, "streaming again", limit_s=10)
    finally:
        server.resume()
        await pipeline.stop()
    assert thawed - frozen >= 1.5
