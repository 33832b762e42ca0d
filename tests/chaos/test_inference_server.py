"""The inference server dies or restarts under a running pipeline: frames resume on their own.

Every health surface tells the truth meanwhile: the cameras read `degraded`, the server stats say
down, and afterwards one restart is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.stats import CameraState
from streamer.inference.repository import CONFIG_FILE
from streamer.inference.server import EmbeddedTritonServer, free_port
from streamer.pipeline import Pipeline
from tests.chaos.conftest import Arrivals, wait_until

CAMERAS = ("north", "south")
RECOVERY_LIMIT_S = 30.0  # generous bound for a loaded 2-core CI machine; the note reports real times


def config_for(
    triton: dict[str, object], clip: Path, inference: dict[str, object] | None = None
) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"health_interval_s": 0.5, **triton},
            "inference": inference or {},
            "publishing": {"jsonl": {"enabled": False}},
            "metrics": {"stall_after_s": 2.0},
            "cameras": [{"name": name, "url": str(clip), "loop": True} for name in CAMERAS],
        }
    )


def camera_states(pipeline: Pipeline) -> set[CameraState]:
    return {stats.state for stats in pipeline.registry.cameras().values()}


async def test_embedded_server_killed_is_restarted_and_frames_resume(
    model_repository: Path, sample_clip: Path
) -> None:
    config = config_for(
        {"mode": "embedded", "model_repository": str(model_repository), "ort_threads": 1},
        sample_clip,
    )
    arrivals = Arrivals()
    pipeline = build_pipeline(config, observers=[arrivals])
    await pipeline.start()
    try:
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 5)
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        os.kill(server.pid, signal.SIGKILL)  # what the OOM killer does
        killed = time.monotonic()

        await wait_until(lambda: camera_states(pipeline) == {CameraState.DEGRADED}, "cameras degraded")
        stats = pipeline.registry.server()
        assert stats is not None and not stats.up and "exited" in (stats.last_error or "")

        for camera in CAMERAS:
            resumed = await arrivals.wait_for(camera, 3, after=killed)
            assert resumed - killed < RECOVERY_LIMIT_S
        await wait_until(lambda: camera_states(pipeline) == {CameraState.STREAMING}, "streaming again")
        assert stats.up and stats.restarts == 1
    finally:
        await pipeline.stop()
    assert pipeline.triton.server is None


async def test_external_server_restarted_with_shared_memory_resumes(
    model_repository: Path, sample_clip: Path
) -> None:
    detector = "person_detector"
    assert (model_repository / detector / CONFIG_FILE).is_file()
    port = free_port()
    server = EmbeddedTritonServer(model_repository, [detector], ort_threads=1, grpc_port=port)
    await server.start()
    config = config_for(
        {"mode": "external", "url": f"127.0.0.1:{port}", "shared_memory": "on"}, sample_clip
    )
    arrivals = Arrivals()
    pipeline = build_pipeline(config, observers=[arrivals])
    try:
        await pipeline.start()
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 5)
        assert pipeline.registry.models()[detector].shared_memory

        await server.stop()  # a restart forgets every registered shared-memory region
        await server.start()
        restarted = time.monotonic()

        for camera in CAMERAS:
            resumed = await arrivals.wait_for(camera, 3, after=restarted)
            assert resumed - restarted < RECOVERY_LIMIT_S
        stats = pipeline.registry.server()
        assert stats is not None and stats.up and stats.restarts == 1
        assert pipeline.registry.models()[detector].shared_memory, "regions registered again"
    finally:
        await pipeline.stop()
        await server.stop()


async def test_embedded_server_that_cannot_come_back_fails_the_pipeline(
    model_repository: Path, sample_clip: Path, tmp_path: Path
) -> None:
    config = config_for(
        {
            "mode": "embedded",
            "model_repository": str(model_repository),
            "ort_threads": 1,
            "give_up_after_s": 3,
            "restart": {"initial_delay_s": 0.2, "max_delay_s": 0.5},
        },
        sample_clip,
    )
    pipeline = build_pipeline(config)
    await pipeline.start()
    try:
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        # The server can never start again: its repository is gone.
        server.repository = tmp_path / "missing"
        os.kill(server.pid, signal.SIGKILL)
        waited = time.monotonic()
        try:
            await pipeline.wait()
        except Exception as exc:
            assert "down for" in str(exc) and "give_up_after_s=3" in str(exc)
        else:
            raise AssertionError("wait() must raise when the server stays down")
        assert time.monotonic() - waited < RECOVERY_LIMIT_S
    finally:
        await pipeline.stop()


async def test_a_frozen_external_server_is_waited_out_briefly_then_reported_and_reattached(
    model_repository: Path, sample_clip: Path
) -> None:
    """SIGSTOP: the server keeps its connections and answers nothing. Readiness says so from the
    first unanswered health check; a freeze shorter than three in a row is waited out (no
    reconnect, no restart); a longer one is acted on, and once the server thaws the one request
    worker, its call cancelled with the old connection, goes on through the same shared-memory
    regions (still registered)."""
    detector = "person_detector"
    port = free_port()
    server = EmbeddedTritonServer(model_repository, [detector], ort_threads=1, grpc_port=port)
    await server.start()
    assert server.pid is not None
    config = config_for(
        {
            "mode": "external", "url": f"127.0.0.1:{port}", "shared_memory": "on",
            "request_timeout_s": 3.0,
        },
        sample_clip,
        inference={"requests_in_flight": 1},  # one worker: losing it would stop every frame
    )
    arrivals = Arrivals()
    pipeline = build_pipeline(config, observers=[arrivals])
    seen_down: list[bool] = []
    try:
        await pipeline.start()
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 5)
        stats = pipeline.registry.server()
        assert stats is not None

        os.kill(server.pid, signal.SIGSTOP)  # shorter than one unanswered check plus the next
        frozen_until = time.monotonic() + 4.0
        while time.monotonic() < frozen_until:
            seen_down.append(not stats.up)
            await asyncio.sleep(0.05)
        assert any(seen_down), "readiness tells at once that the server does not answer"
        assert "no health answer" in (stats.last_error or "")
        os.kill(server.pid, signal.SIGCONT)
        thawed = time.monotonic()
        for camera in CAMERAS:
            await arrivals.wait_for(camera, 3, after=thawed)
        await wait_until(lambda: stats.up, "the server answering again")
        assert stats.restarts == 0, "a brief freeze is waited out, not acted on"

        os.kill(server.pid, signal.SIGSTOP)
        await wait_until(
            lambda: "3 times in a row" in (stats.last_error or ""), "the frozen server given up on",
            limit_s=30.0,
        )
        assert not stats.up
        os.kill(server.pid, signal.SIGCONT)
        thawed = time.monotonic()
        for camera in CAMERAS:
            resumed = await arrivals.wait_for(camera, 3, after=thawed)
            assert resumed - thawed < RECOVERY_LIMIT_S
        await wait_until(lambda: stats.up, "the server back up")
        assert stats.restarts == 1
        assert pipeline.registry.models()[detector].shared_memory, "the same regions, still registered"
    finally:
        if server.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGCONT)
        await pipeline.stop()
        await server.stop()
