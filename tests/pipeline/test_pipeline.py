"""End to end: cameras -> embedded Triton -> YOLOX -> ByteTrack -> results, with real parts."""

from __future__ import annotations

import collections
import os
from pathlib import Path

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.frames import FrameResult
from streamer.inference.server import EmbeddedTritonServer

CLIP_FRAMES = 200


class Collector:
    def __init__(self) -> None:
        self.results: list[FrameResult] = []

    def observe(self, result: FrameResult) -> None:
        self.results.append(result)


def config_for(cameras: list[dict[str, object]], triton: dict[str, object]) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {"triton": triton, "publishing": {"jsonl": {"enabled": False}}, "cameras": cameras}
    )


async def test_pedestrians_are_detected_and_tracked_across_frames_with_latency(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path
) -> None:
    config = config_for(
        [
            {"name": "street", "url": str(sample_clip), "pacing": "fast", "max_fps": 5},
            {"name": "dead", "url": "rtsp://127.0.0.1:9/none", "open_timeout_s": 1},
        ],
        {"mode": "external", "url": embedded_triton.grpc_url},
    )
    collector = Collector()
    pipeline = build_pipeline(config, observers=[collector])
    await pipeline.start()
    await pipeline.cameras["street"].task  # type: ignore[misc]
    await pipeline.stop()

    results = [r for r in collector.results if r.camera == "street"]
    street = pipeline.cameras["street"]
    assert len(results) == street.stats.processed
    assert [r.frame_index for r in results] == list(range(1, CLIP_FRAMES + 1, 2))  # 10 fps capped at 5
    assert all(len(r.tracks) >= 1 for r in results), "people in every processed frame"
    appearances = collections.Counter(int(t) for r in results for t in r.tracks.tracker_id)
    assert max(appearances.values()) >= len(results) // 2, "a track persists across frames"
    assert all(r.latency_s > 0 for r in results)
    assert {"decode", "preprocess", "wait", "inference", "postprocess", "track", "publish"} <= set(
        results[-1].timings
    )
    # the dead camera kept retrying without affecting the other one
    assert pipeline.cameras["dead"].source.stats.reconnects >= 1


async def test_embedded_mode_starts_and_stops_its_own_server_without_leftovers(
    model_repository: Path, sample_clip: Path
) -> None:
    config = config_for(
        [{"name": "a", "url": str(sample_clip), "pacing": "fast", "max_fps": 2}],
        {"mode": "embedded", "model_repository": str(model_repository), "ort_threads": 1},
    )
    collector = Collector()
    pipeline = build_pipeline(config, observers=[collector])
    await pipeline.start()
    server = pipeline.triton.server
    assert server is not None
    pid = server._process.pid if server._process else None
    prefix = server.shm_prefix
    await pipeline.wait()
    await pipeline.stop()
    assert collector.results
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    leftovers = [p for p in os.listdir("/dev/shm") if p.startswith(prefix)]
    assert leftovers == []
