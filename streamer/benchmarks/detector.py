"""`streamer bench`: throughput and latency of the pipeline against the model's raw speed.

One run measures, on the same clip: the ceiling (the best raw in-process ONNX Runtime configuration
over a grid of batch sizes x {one session of N threads, two sessions of one thread}, see
`ceiling.py`), a naive loop (cameras one after another, one frame at a time, no Triton), an
in-process peer (what a user could write instead: decode threads, two one-thread sessions, ByteTrack;
see `peer.py`), and the pipeline with 1, 4 and 8 cameras through the embedded Triton server (and at
8 once more with one frame per request, `inference.max_request_batch: 1`), with
Triton's batch-size distribution, CPU seconds per frame of the service process and of the server's
process tree, and mean wall time per stage. Every figure is measured `--repeat` times, the repeats
interleaved so that the machine's drift touches every figure alike, and printed as min-max. Ratios
divide the pipeline's range by the best ceiling and the best peer seen: they never flatter a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient

from streamer.assembly import build_pipeline, build_sinks
from streamer.benchmarks import DEFAULT_CLIP
from streamer.benchmarks import ceiling as ceiling_grid
from streamer.benchmarks.cpu import process_cpu_s, thread_cpu_s, tree_cpu_s
from streamer.benchmarks.peer import MAX_BATCH as MAX_PEER_BATCH
from streamer.benchmarks.peer import PeerRun, peer_run
from streamer.benchmarks.report import Span, best_cell, grid_lines, stage_means_text
from streamer.config import DetectorConfig, StreamerConfig, TrackerConfig
from streamer.core.frames import Frame, FrameResult
from streamer.core.imaging import letterbox
from streamer.inference.catalog import entry, prepare
from streamer.inference.repository import MODEL_FILE
from streamer.inference.server import EmbeddedTritonServer
from streamer.inference.statistics import TritonStatistics
from streamer.inference.yolox import YOLOX_PAD_VALUE, YoloxDecoder
from streamer.pipeline import Pipeline
from streamer.tracking.camera_tracker import CameraTracker

log = logging.getLogger(__name__)

DETECTOR = "person_detector"
CLIP_SECTIONS = {"detector", "fairness", "identities", "gating"}
WARMUP_S = 3.0
RAW_FRAMES = 200
NAIVE_FRAMES_PER_CAMERA = 40
SOAK_WINDOW_S = 20.0
# The peer batches what is queued up to 8 frames, as Triton's dynamic batcher would, and runs
# again one frame at a time: one-thread sessions may do better without batches (the embedded
# server drops dynamic batching then), and the pipeline is divided by the better peer.
PEER_BATCHES = (MAX_PEER_BATCH, 1)
MS = 1000.0


@dataclass
class PipelineRun:
    cameras: int
    raw_fps: float  # the ceiling: the best raw configuration over the grid, all repeats
    seconds: float
    frames: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    batch_sizes: dict[int, int]
    mean_batch: float
    windows_p95_ms: list[float] = field(default_factory=list)
    label: str = ""
    repeat: int = 0
    service_cpu_ms_per_frame: float = 0.0  # this process (the service), all threads
    server_cpu_ms_per_frame: float = 0.0  # tritonserver and its Python-backend stubs
    stages_ms: dict[str, float] = field(default_factory=dict)  # mean wall time per stage
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per processed frame, per stage


class _Latencies:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time, latency s)
        self.recording = False
        self.stage_s: dict[str, float] = {}

    def observe(self, result: FrameResult) -> None:
        if self.recording:
            self.samples.append((time.monotonic(), result.latency_s))
            for stage, seconds in result.timings.items():
                self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds


def load_frames(clip: Path, count: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        for decoded in container.decode(video=0):
            frames.append(decoded.to_ndarray(format="bgr24"))
            if len(frames) == count:
                break
    return frames


def naive_fps(model_path: Path, clip: Path, cameras: int, size: int) -> float:
    """Cameras one after another, one frame at a time, decode + detect + track, no Triton."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    decoder = YoloxDecoder(size, size)
    settings = DetectorConfig()
    containers = [av.open(str(clip)) for _ in range(cameras)]
    streams = [c.decode(video=0) for c in containers]
    trackers = [CameraTracker(f"cam{i}", TrackerConfig(), 10.0) for i in range(cameras)]
    processed = 0
    started = time.perf_counter()
    for index in range(NAIVE_FRAMES_PER_CAMERA):
        for camera, stream in enumerate(streams):
            image = next(stream).to_ndarray(format="bgr24")
            boxed = letterbox(image, size, size, YOLOX_PAD_VALUE)
            output = session.run(None, {"frames": boxed.image[None]})[0][0]
            detections = decoder.decode(
                output, boxed.ratio, class_ids=settings.class_ids,
                score_threshold=settings.score_threshold,
                nms_iou_threshold=settings.nms_iou_threshold,
                max_detections=settings.max_detections,
            )
            trackers[camera].update(Frame(f"cam{camera}", index, time.time(), 0.0, image), detections)
            processed += 1
    elapsed = time.perf_counter() - started
    for container in containers:
        container.close()
    return processed / elapsed


async def batch_counts(client: grpcclient.InferenceServerClient) -> Counter[int]:
    stats = await client.get_inference_statistics(DETECTOR, as_json=True)
    counts: Counter[int] = Counter()
    for model in stats.get("model_stats", []):
        counts.update(TritonStatistics.from_json(model).batch_executions)
    return counts


async def run_pipeline(
    server: EmbeddedTritonServer,
    clip: Path,
    cameras: int,
    seconds: float,
    in_flight: int,
    publishing: dict[str, Any] | None = None,
    raw_fps: float = 0.0,
    label: str = "",
    repeat: int = 0,
    inference: dict[str, Any] | None = None,
) -> PipelineRun:
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": server.grpc_url},
            "inference": {"requests_in_flight": in_flight, **(inference or {})},
            "publishing": {"jsonl": {"enabled": False}, **(publishing or {})},
            "cameras": [
                {"name": f"cam{i}", "url": str(clip), "loop": True, "pacing": "fast"}
                for i in range(cameras)
            ],
        }
    )
    latencies = _Latencies()
    pipeline = build_pipeline(config, observers=[latencies], sinks=build_sinks(config))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        await pipeline.start()
        await asyncio.sleep(WARMUP_S)
        before = await batch_counts(client)
        processed_before = sum(c.processed for c in pipeline.registry.cameras().values())
        clocks = _CpuClocks(pipeline, server.pid)
        service_cpu, server_cpu = process_cpu_s(), tree_cpu_s(server.pid)
        latencies.recording = True
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        latencies.recording = False
        processed = sum(c.processed for c in pipeline.registry.cameras().values()) - processed_before
        service_cpu = process_cpu_s() - service_cpu
        server_cpu = tree_cpu_s(server.pid) - server_cpu
        cpu_s = clocks.spent()
        after = await batch_counts(client)
    finally:
        await pipeline.stop()
        await client.close()
    batches = {size: after[size] - before.get(size, 0) for size in sorted(after)}
    batches = {size: count for size, count in batches.items() if count}
    executions = sum(batches.values())
    values = np.array([lat for _t, lat in latencies.samples]) * MS
    windows = []
    if seconds >= 2 * SOAK_WINDOW_S:
        for start in np.arange(0, seconds, SOAK_WINDOW_S):
            in_window = [
                lat * MS for t, lat in latencies.samples if start <= t - started < start + SOAK_WINDOW_S
            ]
            if in_window:
                windows.append(round(float(np.percentile(in_window, 95)), 1))
    return PipelineRun(
        cameras=cameras,
        raw_fps=round(raw_fps, 1),
        seconds=round(elapsed, 1),
        frames=processed,
        fps=round(processed / elapsed, 1),
        latency_p50_ms=round(float(np.percentile(values, 50)), 1) if len(values) else 0.0,
        latency_p95_ms=round(float(np.percentile(values, 95)), 1) if len(values) else 0.0,
        batch_sizes=batches,
        mean_batch=round(sum(s * c for s, c in batches.items()) / executions, 2) if executions else 0.0,
        windows_p95_ms=windows,
        label=label or str(cameras),
        repeat=repeat,
        service_cpu_ms_per_frame=round(MS * service_cpu / processed, 2) if processed else 0.0,
        server_cpu_ms_per_frame=round(MS * server_cpu / processed, 2) if processed else 0.0,
        stages_ms={
            stage: round(MS * total / len(latencies.samples), 2)
            for stage, total in latencies.stage_s.items()
        } if latencies.samples else {},
        cpu_ms={stage: round(MS * total / processed, 2) for stage, total in cpu_s.items()}
        if processed else {},
    )


# CPU per stage, in the order a frame meets them. Measured with the thread's own clock around the
# work (decode, preprocess in the camera's thread; postprocess, track, publish on the event loop),
# and per thread from /proc: what the loop's thread spent besides its measured stages is the
# inference client (gRPC, shared memory) and asyncio itself; what no thread above spent is
# FFmpeg's, OpenCV's and gRPC's own threads. Frames decoded but never processed count too.
CPU_STAGES = (
    "decode", "preprocess", "camera other", "client+loop", "postprocess", "track", "publish",
    "other threads", "service", "server",
)


class _CpuClocks:
    """CPU clocks of the service's threads and the server's processes, read at start and end."""

    def __init__(self, pipeline: Pipeline, server_pid: int | None) -> None:
        self.pipeline = pipeline
        self.server_pid = server_pid
        self.loop_thread = threading.get_native_id()  # the bench runs the pipeline on this thread
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        cameras = self.pipeline.registry.cameras().values()
        stages: dict[str, float] = {}
        for camera in cameras:
            for stage, seconds in list(camera.cpu_s.items()):
                stages[stage] = stages.get(stage, 0.0) + seconds
        return {
            **stages,
            "camera threads": sum(thread_cpu_s(camera.thread_id) for camera in cameras),
            "loop thread": thread_cpu_s(self.loop_thread),
            "service": process_cpu_s(),
            "server": tree_cpu_s(self.server_pid),
        }

    def spent(self) -> dict[str, float]:
        end = self._read()
        used = {key: end[key] - self.start.get(key, 0.0) for key in end}
        in_camera = used.get("decode", 0.0) + used.get("preprocess", 0.0)
        on_loop = sum(used.get(stage, 0.0) for stage in ("postprocess", "track", "publish"))
        derived = {
            "camera other": used["camera threads"] - in_camera,  # demux, pacing, hand-over
            "client+loop": used["loop thread"] - on_loop,
            "other threads": used["service"] - used["camera threads"] - used["loop thread"],
        }
        return {stage: max(0.0, {**used, **derived}.get(stage, 0.0)) for stage in CPU_STAGES}


def _batch_text(batches: dict[int, int]) -> str:
    total = sum(batches.values()) or 1
    return " ".join(f"{size}:{100 * count / total:.0f}%" for size, count in batches.items())


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


RUN_HEADER = (
    f"  {'cameras':>7} {'FPS':>12} {'x ceiling':>10} {'x peer':>10} {'p50 ms':>12} {'p95 ms':>12} "
    f"{'batch':>10} {'svc ms/f':>10} {'srv ms/f':>10}  sizes (last repeat)"
)


def summary_line(runs: list[PipelineRun], ceiling: float, peer: float) -> str:
    """One figure's repeats: FPS, ratios to the best ceiling and best peer, latency, CPU per frame."""
    fps = Span.of(r.fps for r in runs)
    return (
        f"  {runs[0].label:>7} {fps.text():>12} {fps.over(ceiling):>10} {fps.over(peer):>10} "
        f"{Span.of(r.latency_p50_ms for r in runs).text():>12} "
        f"{Span.of(r.latency_p95_ms for r in runs).text():>12} "
        f"{Span.of(r.mean_batch for r in runs).text(2):>10} "
        f"{Span.of(r.service_cpu_ms_per_frame for r in runs).text():>10} "
        f"{Span.of(r.server_cpu_ms_per_frame for r in runs).text():>10}  "
        f"{_batch_text(runs[-1].batch_sizes)}"
    )


def mean_stages(runs: list[PipelineRun]) -> dict[str, float]:
    stages = list(dict.fromkeys(stage for r in runs for stage in r.stages_ms))
    return {
        stage: round(sum(r.stages_ms.get(stage, 0.0) for r in runs) / len(runs), 2) for stage in stages
    }


async def main(args: argparse.Namespace) -> int:
    clip = args.clip or DEFAULT_CLIP
    camera_counts = [int(n) for n in str(args.cameras).split(",") if n]
    sections = set(str(args.sections).split(","))
    unknown = sections - {"detector", "identities", "publishing", "zones", "gating", "fairness"}
    if unknown:
        print(f"error: --sections: unknown {', '.join(sorted(unknown))}")
        return 2
    if sections & CLIP_SECTIONS and not Path(clip).is_file():
        print(
            f"error: {clip}: no such video; pass --clip (the default is the checkout's sample "
            "clip, relative to the working directory)"
        )
        return 2
    mqtt_host, mqtt_port = _endpoint(args.mqtt)
    redis_host, redis_port = _endpoint(args.redis)
    sinks = {
        "mqtt": {"enabled": True, "host": mqtt_host, "port": mqtt_port},
        "redis": {"enabled": True, "host": redis_host, "port": redis_port},
    }
    results: dict[str, Any] = {}
    if "detector" in sections:
        results.update(await _detector_section(args, clip, camera_counts, sinks))
    if "fairness" in sections:
        results["fairness"] = await _fairness_section(args, clip)
    if "publishing" in sections:
        from streamer.benchmarks.publishing import as_dicts, format_results
        from streamer.benchmarks.publishing import run_benchmark as publishing_benchmark
        from streamer.config import MqttSinkConfig, RedisSinkConfig

        print(f"publishing throughput (MQTT {args.mqtt}, Redis {args.redis}):")
        rows = await publishing_benchmark(
            mqtt=MqttSinkConfig(host=mqtt_host, port=mqtt_port),
            redis=RedisSinkConfig(host=redis_host, port=redis_port),
        )
        print("\n".join(format_results(rows)))
        results["publishing"] = as_dicts(rows)
    if "identities" in sections:
        from streamer.benchmarks.identities import run_benchmark as identities_benchmark

        print(f"identities (faces + ReID), embedding throughput and cost at {max(camera_counts)} cameras:")
        identities = await identities_benchmark(
            cameras=max(camera_counts), seconds=args.duration, clip=clip, ort_threads=args.ort_threads
        )
        print("\n".join(identities.lines()))
        results["identities"] = asdict(identities)
    if "zones" in sections:
        from streamer.benchmarks.zones import as_dict
        from streamer.benchmarks.zones import run_benchmark as zones_benchmark

        print(f"zones and lines, cost per frame at {max(camera_counts)} cameras (no model):")
        zones = await zones_benchmark(cameras=max(camera_counts))
        print("\n".join(zones.lines()))
        results["zones"] = as_dict(zones)
    if "gating" in sections:
        from streamer.benchmarks.gating import run_benchmark as gating_benchmark

        results["gating"] = await gating_benchmark(args, clip)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    return 0


FAIRNESS_CAMERAS = 12
FAIRNESS_FLOODING = 2


async def _fairness_section(args: argparse.Namespace, clip: Path) -> dict[str, Any]:
    from streamer.benchmarks.fairness import fairness_run, flooding_clip

    repeats = max(1, int(getattr(args, "repeat", 2)))
    normal = FAIRNESS_CAMERAS - FAIRNESS_FLOODING
    runs = []
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as scratch:
        repository = _detector_repository(Path(scratch))
        flood = flooding_clip(clip, Path(scratch) / f"flooding{clip.suffix}")
        server = EmbeddedTritonServer(repository, [DETECTOR], ort_threads=args.ort_threads)
        await server.start()
        try:
            print(
                f"fairness: {FAIRNESS_CAMERAS} cameras, {normal} in real time, "
                f"{FAIRNESS_FLOODING} flooding (timestamps 100x closer), {args.duration:.0f}s:",
                flush=True,
            )
            for repeat in range(repeats):
                run = await fairness_run(
                    server.grpc_url, clip, flood,
                    normal=normal, flooding=FAIRNESS_FLOODING, seconds=args.duration,
                )
                print(f"  repeat {repeat + 1}/{repeats}:")
                print("\n".join(run.lines()), flush=True)
                runs.append(run)
        finally:
            await server.stop()
    print(
        f"  normal cameras' spread (max/min FPS): {Span.of(r.spread() for r in runs).text(2)}; "
        f"flooding / normal: {Span.of(r.flood_over_normal() for r in runs).text(2)}"
    )
    return {
        "runs": [asdict(r) for r in runs],
        "spread": Span.of(r.spread() for r in runs).as_dict(),
        "flood_over_normal": Span.of(r.flood_over_normal() for r in runs).as_dict(),
    }


def _detector_repository(repository: Path) -> Path:
    """A model repository holding the prepared person detector, in `repository`."""
    prepare(entry(DETECTOR), repository)
    return repository


async def _detector_section(
    args: argparse.Namespace, clip: Path, camera_counts: list[int], sinks: dict[str, Any]
) -> dict[str, Any]:
    repeats = max(1, int(getattr(args, "repeat", 2)))
    cameras = max(camera_counts)
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as scratch:
        repository = _detector_repository(Path(scratch))
        model_path = repository / DETECTOR / "1" / MODEL_FILE
        frames = load_frames(clip, RAW_FRAMES)
        size = int(ort.InferenceSession(str(model_path)).get_inputs()[0].shape[1])
        inputs = [letterbox(f, size, size, YOLOX_PAD_VALUE).image for f in frames]
        print(
            f"streamer bench: clip {clip.name}, {os.cpu_count()} CPUs, detector {size}x{size}, "
            f"{repeats} repeats (figures are min-max over them)",
            flush=True,
        )
        server = EmbeddedTritonServer(repository, [DETECTOR], ort_threads=args.ort_threads)
        await server.start()
        grids: list[list[tuple[int, int, int, float]]] = []
        naive: list[float] = []
        peers: list[PeerRun] = []
        runs: dict[str, list[PipelineRun]] = {}
        soak: PipelineRun | None = None
        try:
            for repeat in range(repeats):  # interleaved: drift touches every figure alike
                grids.append(await asyncio.to_thread(ceiling_grid.measure_grid, model_path, inputs))
                best_so_far = best_cell(ceiling_grid.merge(grids)).best
                naive.append(
                    await asyncio.to_thread(naive_fps, model_path, clip, cameras, size)
                )
                for max_batch in PEER_BATCHES:
                    peers.append(await asyncio.to_thread(
                        peer_run, model_path, clip, cameras, size, args.duration, max_batch
                    ))
                for count in camera_counts:
                    run = await run_pipeline(
                        server, clip, count, args.duration, max(count, 8),
                        raw_fps=best_so_far, repeat=repeat,
                    )
                    runs.setdefault(run.label, []).append(run)
                run = await run_pipeline(
                    server, clip, cameras, args.duration, max(cameras, 8), publishing=sinks,
                    raw_fps=best_so_far, label=f"{cameras}+sinks", repeat=repeat,
                )
                runs.setdefault(run.label, []).append(run)
                # The same cameras with one frame per request (`max_request_batch`): what
                # sharing requests saves, measured back to back.
                run = await run_pipeline(
                    server, clip, cameras, args.duration, max(cameras, 8),
                    raw_fps=best_so_far, label=f"{cameras} 1/req", repeat=repeat,
                    inference={"max_request_batch": 1},
                )
                runs.setdefault(run.label, []).append(run)
                print(
                    f"  repeat {repeat + 1}/{repeats}: ceiling {best_so_far:.1f}, "
                    "peer " + "/".join(f"{p.fps:.1f}" for p in peers[-len(PEER_BATCHES):]) + ", "
                    + ", ".join(f"{label} {rs[-1].fps:.1f}" for label, rs in runs.items())
                    + " FPS",
                    flush=True,
                )
            cells = ceiling_grid.merge(grids)
            winner = best_cell(cells)
            ceiling = winner.best
            peer_best = max(p.fps for p in peers)
            # The peer's figures are those of its better batch limit, as the ceiling's are.
            best_batch = max(peers, key=lambda p: p.fps).max_batch
            best_peers = [p for p in peers if p.max_batch == best_batch]
            if args.soak:
                soak = await run_pipeline(
                    server, clip, cameras, args.soak, max(cameras, 8), raw_fps=ceiling,
                    label=f"{cameras} soak",
                )
        finally:
            await server.stop()
    for label_runs in runs.values():
        for run in label_runs:
            run.raw_fps = round(ceiling, 1)
    print(
        f"  ceiling grid: raw ONNX Runtime in-process, FPS, best of {ceiling_grid.PASSES} passes "
        f"of {ceiling_grid.PASS_S:.1f}s per repeat (sessions x threads each):"
    )
    print("\n".join(grid_lines(cells)))
    print(f"  ceiling: {ceiling:7.1f} FPS ({winner.describe()})")
    print(f"  naive loop ({cameras} cameras in turn, no Triton): {Span.of(naive).text()} FPS")
    for max_batch in PEER_BATCHES:
        variant = [p for p in peers if p.max_batch == max_batch]
        peer_fps = Span.of(p.fps for p in variant)
        print(
            f"  in-process peer ({cameras} decode threads, 2 sessions x 1 thread, ByteTrack, no "
            f"Triton), batches up to {max_batch}: {peer_fps.text()} FPS "
            f"({peer_fps.over(ceiling)} x ceiling), "
            f"CPU {Span.of(p.cpu_ms_per_frame for p in variant).text()} ms/frame, "
            f"batch {Span.of(p.mean_batch for p in variant).text(2)}"
            + (" *" if max_batch == best_batch else "")
        )
    print(f"  pipeline through the embedded Triton server (x peer: over the best peer, {peer_best:.1f}):")
    print(RUN_HEADER)
    for label_runs in runs.values():
        print(summary_line(label_runs, ceiling, peer_best))
    print("  mean wall ms per frame and stage (svc/srv ms/f: CPU ms per frame, service / server):")
    for label, label_runs in runs.items():
        print(f"  {label:>7}  {stage_means_text(mean_stages(label_runs))}")
    print(
        "  CPU ms per processed frame and stage (thread clocks; service = the whole process, "
        "server = tritonserver and its model processes):"
    )
    for label, label_runs in runs.items():
        print(f"  {label:>7}  " + " ".join(
            f"{stage} {Span.of(r.cpu_ms.get(stage, 0.0) for r in label_runs).text(2)}"
            for stage in CPU_STAGES
        ))
    peer_cpu = Span.of(p.cpu_ms_per_frame for p in best_peers)
    for label, label_runs in runs.items():
        total = Span.of(r.service_cpu_ms_per_frame + r.server_cpu_ms_per_frame for r in label_runs)
        print(
            f"  {label:>7}  CPU per frame, service + server {total.text(2)} ms against the peer's "
            f"{peer_cpu.text(2)} ms: where the CPU is the limit, pipeline / peer = "
            f"{Span(peer_cpu.low / total.high, peer_cpu.high / total.low).text(2) if total.low else '-'}"
        )
    if soak is not None:
        print(
            f"  soak {cameras} cameras {soak.seconds:.0f}s: {soak.fps:.1f} FPS "
            f"({soak.fps / ceiling:.2f} x ceiling, {soak.fps / peer_best:.2f} x peer), p95 per "
            f"{SOAK_WINDOW_S:.0f}s window (ms): {soak.windows_p95_ms}"
        )
    all_runs = [run for label_runs in runs.values() for run in label_runs]
    return {
        "raw_fps": ceiling,
        "ceiling": {
            "fps": ceiling,
            "configuration": winner.describe(),
            "batch": winner.batch,
            "sessions": winner.sessions,
            "threads": winner.threads,
            "grid": [asdict(cell) for cell in cells],
        },
        "naive_fps": max(naive),
        "naive": {"fps": naive, **Span.of(naive).as_dict()},
        "peer": {
            "fps": peer_best,
            "max_batch": best_batch,
            "runs": [asdict(p) for p in peers],
            **Span.of(p.fps for p in best_peers).as_dict(),
        },
        "runs": [asdict(r) for r in all_runs + ([soak] if soak is not None else [])],
        "summary": {
            label: {
                "fps": Span.of(r.fps for r in label_runs).as_dict(),
                "x_ceiling": Span.of(r.fps / ceiling for r in label_runs).as_dict(),
                "x_peer": Span.of(r.fps / peer_best for r in label_runs).as_dict(),
                "service_cpu_ms_per_frame": Span.of(
                    r.service_cpu_ms_per_frame for r in label_runs
                ).as_dict(),
                "server_cpu_ms_per_frame": Span.of(
                    r.server_cpu_ms_per_frame for r in label_runs
                ).as_dict(),
                "stages_ms": mean_stages(label_runs),
                "cpu_ms": {
                    stage: Span.of(r.cpu_ms.get(stage, 0.0) for r in label_runs).as_dict()
                    for stage in CPU_STAGES
                },
            }
            for label, label_runs in runs.items()
        },
    }
