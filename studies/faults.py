"""Each single fault once, timed: how long the service takes to heal.

    python -m studies.faults

For every fault: the time from the fault's end to the first processed frame of the camera(s) it
touched, the frames lost meanwhile, the states the health surfaces showed, and the FPS of the
cameras it did not touch (during the fault / before it). Real processes, bounded (tests/chaos/
asserts the same behaviour with generous limits).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.stats import CameraState
from streamer.inference.catalog import entry, prepare
from streamer.inference.server import EmbeddedTritonServer, free_port
from streamer.pipeline import Pipeline
from tests.chaos.conftest import Arrivals, wait_until
from tests.chaos.test_cameras import Crashes
from tests.support.checkout import SAMPLE_CLIP as CLIP
from tests.support.rtsp import RtspServer

DETECTOR = "person_detector"
WINDOW_S = 5.0


class StateLog:
    """Every state a camera passed through, in order (what the dashboard and MQTT showed)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.seen: dict[str, list[str]] = {}
        self.pipeline = pipeline

    def sample(self) -> None:
        for name, stats in self.pipeline.registry.cameras().items():
            states = self.seen.setdefault(name, [])
            if not states or states[-1] != stats.state.value:
                states.append(stats.state.value)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.1)


def config(triton: dict[str, Any], cameras: list[dict[str, Any]]) -> StreamerConfig:
    return StreamerConfig.model_validate({
        "triton": {"health_interval_s": 1.0, **triton},
        "publishing": {"jsonl": {"enabled": False}},
        "metrics": {"stall_after_s": 2.0},
        "cameras": cameras,
    })


def fps(arrivals: Arrivals, cameras: list[str], start: float, end: float) -> float:
    return sum(start <= t < end for c in cameras for t in arrivals.times[c]) / (end - start)


async def run_with(pipeline: Pipeline, arrivals: Arrivals, body: Any) -> dict[str, Any]:
    states = StateLog(pipeline)
    watcher = asyncio.create_task(states.run())
    await pipeline.start()
    try:
        for name in pipeline.cameras:
            await arrivals.wait_for(name, 10)
        result: dict[str, Any] = await body(pipeline)
    finally:
        watcher.cancel()
        await pipeline.stop()
    result["states"] = states.seen
    return result


async def triton_killed(repository: Path) -> dict[str, Any]:
    cameras = [{"name": f"cam{i}", "url": str(CLIP), "loop": True} for i in range(2)]
    arrivals = Arrivals()
    pipeline = build_pipeline(
        config({"mode": "embedded", "model_repository": str(repository)}, cameras),
        observers=[arrivals],
    )

    async def body(pipeline: Pipeline) -> dict[str, Any]:
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        processed = sum(s.processed for s in pipeline.registry.cameras().values())
        os.kill(server.pid, signal.SIGKILL)
        killed = time.monotonic()
        back = max([await arrivals.wait_for(name, 1, after=killed + 0.3) for name in pipeline.cameras])
        stats = pipeline.registry.server()
        assert stats is not None
        skipped = sum(s.inference_errors for s in pipeline.registry.cameras().values())
        return {
            "fault": "embedded tritonserver kill -9",
            "frames_again_after_s": round(back - killed, 2),
            "processed_before": processed,
            "frames_skipped": skipped,
            "restarts": stats.restarts,
        }

    return await run_with(pipeline, arrivals, body)


async def external_restarted(repository: Path) -> dict[str, Any]:
    port = free_port()
    server = EmbeddedTritonServer(repository, [DETECTOR], grpc_port=port)
    await server.start()
    cameras = [{"name": f"cam{i}", "url": str(CLIP), "loop": True} for i in range(2)]
    arrivals = Arrivals()
    pipeline = build_pipeline(
        config({"mode": "external", "url": f"127.0.0.1:{port}", "shared_memory": "on"}, cameras),
        observers=[arrivals],
    )

    async def body(pipeline: Pipeline) -> dict[str, Any]:
        stopped = time.monotonic()
        await server.stop()
        await server.start()
        back_up = time.monotonic()
        back = max([await arrivals.wait_for(name, 1, after=back_up) for name in pipeline.cameras])
        return {
            "fault": "external Triton on loopback restarted (shared memory on)",
            "server_down_s": round(back_up - stopped, 2),
            "frames_again_after_s": round(back - back_up, 2),
            "frames_skipped": sum(s.inference_errors for s in pipeline.registry.cameras().values()),
            "shared_memory_after": pipeline.registry.models()[DETECTOR].shared_memory,
        }

    try:
        return await run_with(pipeline, arrivals, body)
    finally:
        await server.stop()


async def camera_crash(repository: Path) -> dict[str, Any]:
    server = EmbeddedTritonServer(repository, [DETECTOR])
    await server.start()
    cameras = [{"name": n, "url": str(CLIP), "loop": True} for n in ("faulty", "steady")]
    arrivals = Arrivals()
    buggy = Crashes("faulty", on_frames={60})
    pipeline = build_pipeline(
        config({"mode": "external", "url": server.grpc_url}, cameras),
        stages=[buggy],  # type: ignore[list-item]
        observers=[arrivals],
    )

    async def body(pipeline: Pipeline) -> dict[str, Any]:
        await wait_until(lambda: bool(buggy.crashed_at), "the crash")
        crashed = buggy.crashed_at[0]
        back = await arrivals.wait_for("faulty", 1, after=crashed)
        await asyncio.sleep(WINDOW_S)
        before = fps(arrivals, ["steady"], crashed - WINDOW_S, crashed)
        during = fps(arrivals, ["steady"], crashed, crashed + WINDOW_S)
        return {
            "fault": "exception in one camera's processing",
            "frames_again_after_s": round(back - crashed, 2),
            "other_camera_fps_ratio": round(during / before, 3),
        }

    try:
        return await run_with(pipeline, arrivals, body)
    finally:
        await server.stop()


async def rtsp_frozen(repository: Path) -> dict[str, Any]:
    server = EmbeddedTritonServer(repository, [DETECTOR])
    await server.start()
    rtsp = RtspServer({"/cam": CLIP})
    rtsp.start()
    cameras = [
        {"name": "frozen", "url": rtsp.url("/cam"), "read_timeout_s": 5, "open_timeout_s": 3,
         "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 1.0}},
        {"name": "steady", "url": str(CLIP), "loop": True},
    ]
    arrivals = Arrivals()
    pipeline = build_pipeline(
        config({"mode": "external", "url": server.grpc_url}, cameras), observers=[arrivals]
    )

    async def body(pipeline: Pipeline) -> dict[str, Any]:
        frozen = pipeline.registry.cameras()["frozen"]
        rtsp.pause()
        paused = time.monotonic()
        stalled_after = await wait_until(lambda: frozen.state == CameraState.STALLED, "stalled")
        await asyncio.sleep(max(0.0, 8.0 - (time.monotonic() - paused)))
        rtsp.resume()
        resumed = time.monotonic()
        back = await arrivals.wait_for("frozen", 1, after=resumed)
        await wait_until(lambda: frozen.state == CameraState.STREAMING, "streaming")
        streaming_again = time.monotonic() - resumed
        return {
            "fault": "RTSP server SIGSTOP for 8 s, then SIGCONT",
            "stalled_after_s": round(stalled_after, 2),
            "frames_again_after_s": round(back - resumed, 2),
            "streaming_again_after_s": round(streaming_again, 2),
            "other_camera_fps_ratio": round(
                fps(arrivals, ["steady"], paused, resumed)
                / fps(arrivals, ["steady"], paused - WINDOW_S, paused), 3
            ),
        }

    try:
        return await run_with(pipeline, arrivals, body)
    finally:
        rtsp.terminate()
        await server.stop()


def prepared_repository(folder: Path) -> Path:
    """`folder` as a model repository serving the person detector (shipped config, demo weights)."""
    prepare(entry(DETECTOR), folder)
    return folder


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="streamer-measure-") as scratch:
        repository = prepared_repository(Path(scratch))
        for measure in (triton_killed, external_restarted, camera_crash, rtsp_frozen):
            print(json.dumps(await measure(repository)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
