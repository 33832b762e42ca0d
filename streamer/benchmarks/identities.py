"""Benchmark of the identities stage: embedding throughput, batched vs batch 1, and what the stage
costs the whole pipeline (aggregate FPS at N cameras with and without it, same server, same run).

`run_benchmark()` starts an embedded Triton serving the detector, face and ReID models (or uses
`server_url`), then measures:
* per embedding model, items/s when every crop is sent at once through `requests_in_flight`
  workers (Triton's dynamic batcher groups them) against one request at a time (batch 1), with
  the mean batch Triton executed (from its statistics);
* the pipeline at `cameras` cameras looping a clip as fast as it goes, without and with the
  identities stage (faces every frame + ReID), so the difference is the stage's cost.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient

from streamer.assembly import build_pipeline, build_stages
from streamer.benchmarks import DEFAULT_CLIP
from streamer.config import StreamerConfig
from streamer.core.frames import FrameResult
from streamer.identities.stage import IdentityStage
from streamer.inference.catalog import entry, prepare
from streamer.inference.client import TritonModel
from streamer.inference.embedding import EmbeddingModel
from streamer.inference.server import EmbeddedTritonServer

log = logging.getLogger(__name__)

DETECTOR = "person_detector"
EMBEDDERS = ("face_embedder", "person_reid")
WARMUP_ITEMS = 16
WARMUP_S = 3.0
REQUEST_TIMEOUT_S = 60.0
RANDOM_SEED = 0


@dataclass(frozen=True)
class EmbeddingThroughput:
    model: str
    requests_in_flight: int
    items: int
    seconds: float
    items_per_s: float
    mean_batch: float  # items per Triton execution, from the server's statistics


@dataclass(frozen=True)
class StageCost:
    cameras: int
    seconds: float
    fps_without: float
    fps_with: float
    stage_ms_mean: float  # time in the identities stage per frame (with it enabled)
    face_embeddings: int
    reid_embeddings: int


@dataclass
class IdentityBenchResult:
    throughput: list[EmbeddingThroughput] = field(default_factory=list)
    stage_cost: StageCost | None = None

    def lines(self) -> list[str]:
        """Human-readable report, one measurement per line."""
        out = [f"  {'model':<14} {'in flight':>9} {'items/s':>9} {'batch':>6}"]
        for run in self.throughput:
            out.append(
                f"  {run.model:<14} {run.requests_in_flight:>9} {run.items_per_s:>9.1f} "
                f"{run.mean_batch:>6.2f}"
            )
        if self.stage_cost is not None:
            cost = self.stage_cost
            out.append(
                f"  pipeline {cost.cameras} cameras: {cost.fps_without:.1f} FPS without identities, "
                f"{cost.fps_with:.1f} FPS with faces+ReID (stage {cost.stage_ms_mean:.1f} ms/frame; "
                f"{cost.face_embeddings} face and {cost.reid_embeddings} ReID embeddings)"
            )
        return out


async def _execution_counts(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = await client.get_inference_statistics(model, as_json=True)
    model_stats = stats.get("model_stats", [{}])[0]
    return int(model_stats.get("inference_count", 0)), int(model_stats.get("execution_count", 0))


async def embedding_throughput(
    client: grpcclient.InferenceServerClient, model_name: str, items: int, requests_in_flight: int
) -> EmbeddingThroughput:
    """Send `items` crops at once through a TritonModel with `requests_in_flight` workers."""
    model = TritonModel(
        client,
        model_name,
        requests_in_flight=requests_in_flight,
        queue_size=items,
        use_shared_memory=True,
        request_timeout_s=REQUEST_TIMEOUT_S,
    )
    spec = await model.start()
    try:
        embedder = EmbeddingModel(model)
        embedder.configure(spec)
        rng = np.random.default_rng(RANDOM_SEED)
        crops = rng.integers(0, 256, (items, embedder.height, embedder.width, 3), dtype=np.uint8)
        await asyncio.gather(*(embedder.embed(crop) for crop in crops[:WARMUP_ITEMS]))
        inferences_before, executions_before = await _execution_counts(client, model_name)
        started = time.perf_counter()
        await asyncio.gather(*(embedder.embed(crop) for crop in crops))
        elapsed = time.perf_counter() - started
        inferences, executions = await _execution_counts(client, model_name)
    finally:
        await model.stop()
    executed = executions - executions_before
    return EmbeddingThroughput(
        model=model_name,
        requests_in_flight=requests_in_flight,
        items=items,
        seconds=round(elapsed, 2),
        items_per_s=round(items / elapsed, 1),
        mean_batch=round((inferences - inferences_before) / executed, 2) if executed else 0.0,
    )


def _pipeline_config(url: str, clip: Path, cameras: int, in_flight: int, identities: bool) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": url},
            "inference": {"requests_in_flight": in_flight},
            "publishing": {"jsonl": {"enabled": False}},
            "faces": {"enabled": identities},
            "reid": {"enabled": identities},
            "identities": {"faces_store": str(Path(tempfile.gettempdir()) / "bench-faces.npz")},
            "cameras": [
                {"name": f"cam{i}", "url": str(clip), "loop": True, "pacing": "fast"}
                for i in range(cameras)
            ],
        }
    )


class _StageTimes:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.recording = False

    def observe(self, result: FrameResult) -> None:
        if self.recording:
            self.seconds.append(result.timings.get(IdentityStage.name, 0.0))


async def _pipeline_fps(config: StreamerConfig, seconds: float) -> tuple[float, _StageTimes, Any]:
    times = _StageTimes()
    stages = build_stages(config)
    pipeline = build_pipeline(
        config, stages=stages, observers=[times]
    )
    try:
        await pipeline.start()
        await asyncio.sleep(WARMUP_S)
        before = sum(c.processed for c in pipeline.registry.cameras().values())
        times.recording = True
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        times.recording = False
        processed = sum(c.processed for c in pipeline.registry.cameras().values()) - before
    finally:
        await pipeline.stop()
    return processed / elapsed, times, stages[0] if stages else None


async def stage_cost(url: str, clip: Path, cameras: int, seconds: float) -> StageCost:
    """Aggregate FPS at `cameras` cameras without, then with, the identities stage."""
    in_flight = max(cameras, 8)
    fps_without, _times, _stage = await _pipeline_fps(
        _pipeline_config(url, clip, cameras, in_flight, identities=False), seconds
    )
    fps_with, times, stage = await _pipeline_fps(
        _pipeline_config(url, clip, cameras, in_flight, identities=True), seconds
    )
    assert isinstance(stage, IdentityStage)
    return StageCost(
        cameras=cameras,
        seconds=seconds,
        fps_without=round(fps_without, 1),
        fps_with=round(fps_with, 1),
        stage_ms_mean=round(1000 * float(np.mean(times.seconds)), 1) if times.seconds else 0.0,
        face_embeddings=stage.stats.face_embeddings,
        reid_embeddings=stage.stats.reid_embeddings,
    )


def _scratch_repository(folder: Path, models: list[str]) -> Path:
    for name in models:
        prepare(entry(name), folder)
    return folder


async def run_benchmark(
    server_url: str | None = None,
    *,
    items: int = 256,
    requests_in_flight: tuple[int, ...] = (1, 16),
    cameras: int = 8,
    seconds: float = 20.0,
    clip: Path | None = None,
    ort_threads: int = 0,
) -> IdentityBenchResult:
    """Embedding throughput (batched vs batch 1) and the stage's cost at `cameras` cameras.

    `cameras=0` skips the pipeline part. Without `server_url`, an embedded Triton is started on a
    scratch repository prepared from the demo weights.
    """
    result = IdentityBenchResult()
    with tempfile.TemporaryDirectory(prefix="streamer-identities-bench-") as scratch:
        server: EmbeddedTritonServer | None = None
        url = server_url
        if url is None:
            models = [DETECTOR, "face_detector", *EMBEDDERS]
            repository = await asyncio.to_thread(_scratch_repository, Path(scratch), models)
            server = EmbeddedTritonServer(repository, models, ort_threads=ort_threads)
            await server.start()
            url = server.grpc_url
        client = grpcclient.InferenceServerClient(url)
        try:
            for model in EMBEDDERS:
                for in_flight in requests_in_flight:
                    run = await embedding_throughput(client, model, items, in_flight)
                    log.info("%s", run)
                    result.throughput.append(run)
            if cameras > 0:
                result.stage_cost = await stage_cost(url, clip or DEFAULT_CLIP, cameras, seconds)
        finally:
            await client.close()
            if server is not None:
                await server.stop()
    return result
