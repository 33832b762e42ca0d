"""`streamer bench --sections gating`: what motion-gated detection buys, and what it costs.

On the idle-period footage (`footage.py`: the sample clip's street, people 20% of the time), each
camera playing a rotation of it so that cameras are busy at different times, as real ones are:

* capacity: how many cameras at 10 FPS (max_fps 10, real-time pacing, looping) the machine
  sustains, with gating and without: every camera publishes >= 9.5 FPS and the p95 latency of
  detected frames stays under 500 ms. The camera count doubles until a run fails, then a
  bisection finds the largest count that passes.
* recall: one camera played without drops (fast pacing), gated and ungated. Every ungated track
  of at least `MIN_TRACK_FRAMES` frames is matched to the gated track overlapping it (IoU >= 0.5)
  in the most frames; it is recalled when they overlap in at least half its frames. Lateness:
  frames from the ungated track's `new` event to the matched gated one's, and from each group's
  appearance (the footage's cut) to the first `new` event of each run.
* cost: on the always-busy sample clip (every frame has motion, so nothing is gated), processed
  FPS with the motion detector in front and without, interleaved `--repeat` times, and the
  detector's own milliseconds per frame against the CPU milliseconds a frame costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamer.assembly import build_pipeline
from streamer.benchmarks.cpu import process_cpu_s, tree_cpu_s
from streamer.benchmarks.footage import IdleFootage, build_idle_footage, rotated
from streamer.benchmarks.report import Span
from streamer.config import MotionConfig, StreamerConfig
from streamer.core.events import TrackEvent, TrackEventType
from streamer.core.frames import FrameResult
from streamer.inference.catalog import entry, prepare
from streamer.inference.server import EmbeddedTritonServer
from streamer.sources.motion import MotionDetector

DETECTOR = "person_detector"
TARGET_FPS = 10.0
MIN_CAMERA_FPS = 9.5
MAX_LATENCY_P95_MS = 500.0
WARMUP_S = 3.0
MAX_CAMERAS = 64
PHASES = 5  # rotations of the footage, 30 frames apart: each group of people in a different one
PHASE_FRAMES = 30
MIN_TRACK_FRAMES = 3
MATCH_IOU = 0.5
MS = 1000.0


@dataclass
class CapacityProbe:
    cameras: int
    gated: bool
    seconds: float
    fps_min: float
    fps_mean: float
    latency_p95_ms: float  # frames that went through detection
    latency_p95_all_ms: float  # every published frame, carried-over ones included
    detected_share: float  # published frames that were detected
    passed: bool
    # CPU ms per camera per second, the service process and the inference server's tree: the
    # figure the load of other programs on the machine disturbs least
    service_cpu_ms_per_camera_s: float = 0.0
    server_cpu_ms_per_camera_s: float = 0.0

    @property
    def cpu_ms_per_camera_s(self) -> float:
        return self.service_cpu_ms_per_camera_s + self.server_cpu_ms_per_camera_s


@dataclass
class RecallReport:
    tracks: int  # ungated tracks of at least MIN_TRACK_FRAMES frames
    recalled: int
    recall: float
    delay_frames: list[int] = field(default_factory=list)  # gated `new` - ungated `new`, per pair
    appearance_ungated: list[int] = field(default_factory=list)  # per group: first `new` - cut
    appearance_gated: list[int] = field(default_factory=list)
    detected_share: float = 0.0  # of the gated run's frames


class _Recorder:
    """Observer: latencies per detected / carried frame while recording, or every result."""

    def __init__(self, keep_results: bool = False) -> None:
        self.recording = keep_results
        self.keep_results = keep_results
        self.detected_ms: list[float] = []
        self.carried_ms: list[float] = []
        self.results: list[FrameResult] = []

    def observe(self, result: FrameResult) -> None:
        if not self.recording:
            return
        (self.detected_ms if result.detected else self.carried_ms).append(result.latency_s * MS)
        if self.keep_results:
            self.results.append(result)


def _config(server_url: str, cameras: list[dict[str, Any]], in_flight: int) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": server_url},
            "inference": {"requests_in_flight": in_flight},
            "publishing": {"jsonl": {"enabled": False}},
            "cameras": cameras,
        }
    )


@asynccontextmanager
async def detector_server(ort_threads: int) -> Any:
    """The embedded Triton server with the person detector, in a scratch model repository."""
    with tempfile.TemporaryDirectory(prefix="streamer-bench-gating-") as scratch:
        repository = Path(scratch)
        prepare(entry(DETECTOR), repository)
        server = EmbeddedTritonServer(repository, [DETECTOR], ort_threads=ort_threads)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


async def probe(
    server: EmbeddedTritonServer, footages: list[IdleFootage], cameras: int, gated: bool,
    seconds: float,
) -> CapacityProbe:
    """`cameras` live-like cameras (10 FPS, real time, looping) for `seconds` after a warm-up."""
    config = _config(
        server.grpc_url,
        [
            {
                "name": f"cam{i}", "url": str(footages[i % len(footages)].path), "loop": True,
                "pacing": "realtime", "max_fps": TARGET_FPS, "motion": {"enabled": gated},
            }
            for i in range(cameras)
        ],
        max(cameras, 8),
    )
    recorder = _Recorder()
    pipeline = build_pipeline(config, observers=[recorder])
    try:
        await pipeline.start()
        await asyncio.sleep(WARMUP_S)
        before = {name: stats.processed for name, stats in pipeline.registry.cameras().items()}
        service_cpu, server_cpu = process_cpu_s(), tree_cpu_s(server.pid)
        recorder.recording = True
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        recorder.recording = False
        service_cpu = process_cpu_s() - service_cpu
        server_cpu = tree_cpu_s(server.pid) - server_cpu
        after = {name: stats.processed for name, stats in pipeline.registry.cameras().items()}
    finally:
        await pipeline.stop()
    fps = [(after[name] - before[name]) / elapsed for name in after]
    detected, everything = recorder.detected_ms, recorder.detected_ms + recorder.carried_ms
    # No frame detected in the window (gated cameras in an idle stretch): nothing waited for
    # the detector, so the published frames' latency is the figure.
    judged = detected or everything
    p95 = float(np.percentile(judged, 95)) if judged else float("inf")
    result = CapacityProbe(
        cameras=cameras,
        gated=gated,
        seconds=round(elapsed, 1),
        fps_min=round(min(fps), 2),
        fps_mean=round(float(np.mean(fps)), 2),
        latency_p95_ms=round(p95, 1),
        latency_p95_all_ms=round(float(np.percentile(everything, 95)), 1) if everything else 0.0,
        detected_share=round(len(detected) / len(everything), 3) if everything else 0.0,
        passed=min(fps) >= MIN_CAMERA_FPS and p95 < MAX_LATENCY_P95_MS,
        service_cpu_ms_per_camera_s=round(MS * service_cpu / elapsed / cameras, 1),
        server_cpu_ms_per_camera_s=round(MS * server_cpu / elapsed / cameras, 1),
    )
    print(
        f"    {'gated' if gated else 'ungated':>8} {cameras:3d} cameras: FPS min {result.fps_min:5.2f} "
        f"mean {result.fps_mean:5.2f}, p95 {result.latency_p95_ms:6.1f} ms detected "
        f"({result.latency_p95_all_ms:.1f} all), detected {result.detected_share:.0%}, CPU "
        f"{result.service_cpu_ms_per_camera_s:.0f}+{result.server_cpu_ms_per_camera_s:.0f} "
        f"ms/camera/s -> "
        f"{'pass' if result.passed else 'FAIL'}",
        flush=True,
    )
    return result


async def capacity(
    server: EmbeddedTritonServer, footages: list[IdleFootage], gated: bool, seconds: float,
    limit: int = MAX_CAMERAS,
) -> tuple[int, list[CapacityProbe]]:
    """The largest camera count that passes: doubling, then bisection."""
    probes: list[CapacityProbe] = []
    best, failed, count = 0, None, 1
    while count <= limit:
        run = await probe(server, footages, count, gated, seconds)
        probes.append(run)
        if not run.passed:
            failed = count
            break
        best, count = count, count * 2
    if failed is None:
        return best, probes
    while failed - best > 1:
        middle = (best + failed) // 2
        run = await probe(server, footages, middle, gated, seconds)
        probes.append(run)
        if run.passed:
            best = middle
        else:
            failed = middle
    return best, probes


def _cpu_per_camera(probes: list[CapacityProbe]) -> float:
    """Median CPU ms per camera-second over the runs that kept up (all runs if none did),
    preferring runs with a camera per rotation or more: their windows hold idle and busy alike."""
    mixed = [p for p in probes if p.cameras >= PHASES] or probes
    kept_up = [p.cpu_ms_per_camera_s for p in mixed if p.passed] or [
        p.cpu_ms_per_camera_s for p in mixed
    ]
    return round(float(np.median(kept_up)), 1) if kept_up else 0.0


def _cores_hold(cpu_ms_per_camera_s: float) -> int:
    return int((os.cpu_count() or 1) * MS // cpu_ms_per_camera_s) if cpu_ms_per_camera_s else 0


async def played_once(server_url: str, footage: IdleFootage, gated: bool) -> list[FrameResult]:
    """Every frame of one pass of the footage, without drops (fast pacing)."""
    config = _config(
        server_url,
        [{"name": "street", "url": str(footage.path), "pacing": "fast",
          "motion": {"enabled": gated}}],
        8,
    )
    recorder = _Recorder(keep_results=True)
    pipeline = build_pipeline(config, observers=[recorder])
    try:
        await pipeline.start()
        task = pipeline.cameras["street"].task
        assert task is not None
        await task
    finally:
        await pipeline.stop()
    return recorder.results


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _tracks(results: list[FrameResult]) -> dict[int, dict[int, np.ndarray]]:
    """Track id -> frame index -> box, from the published frames."""
    tracks: dict[int, dict[int, np.ndarray]] = {}
    for result in results:
        ids = result.tracks.tracker_id
        if ids is None:
            continue
        for track_id, box in zip(ids.tolist(), result.tracks.xyxy, strict=True):
            tracks.setdefault(int(track_id), {})[result.frame_index] = box
    return tracks


def _births(results: list[FrameResult]) -> Iterator[int]:
    for result in results:
        for event in result.events:
            if isinstance(event, TrackEvent) and event.type == TrackEventType.NEW:
                yield event.frame_index


def compare_runs(
    ungated: list[FrameResult], gated: list[FrameResult], footage: IdleFootage
) -> RecallReport:
    """Track recall of the gated run against the ungated one, and the lateness of new tracks."""
    reference, candidates = _tracks(ungated), _tracks(gated)
    report = RecallReport(tracks=0, recalled=0, recall=1.0)
    for frames in reference.values():
        if len(frames) < MIN_TRACK_FRAMES:
            continue
        report.tracks += 1
        best_id, best_overlap = None, 0
        for candidate_id, candidate in candidates.items():
            overlap = sum(
                1 for index, box in frames.items()
                if index in candidate and _iou(box, candidate[index]) >= MATCH_IOU
            )
            if overlap > best_overlap:
                best_id, best_overlap = candidate_id, overlap
        if best_id is not None and best_overlap >= len(frames) / 2:
            report.recalled += 1
            report.delay_frames.append(min(candidates[best_id]) - min(frames))
    report.recall = round(report.recalled / report.tracks, 4) if report.tracks else 1.0
    for first, last in footage.busy:
        for births, into in ((list(_births(ungated)), report.appearance_ungated),
                             (list(_births(gated)), report.appearance_gated)):
            in_group = [index for index in births if first <= index <= last]
            if in_group:
                into.append(min(in_group) - first)
    report.detected_share = round(sum(r.detected for r in gated) / max(1, len(gated)), 3)
    return report


@dataclass
class BusyRun:
    gated: bool
    fps: float
    cpu_ms_per_frame: float  # service + inference server
    motion_ms_per_frame: float  # the motion detector's wall time in the camera threads


class _MotionTime:
    def __init__(self) -> None:
        self.frames = 0
        self.seconds = 0.0

    def observe(self, result: FrameResult) -> None:
        self.frames += 1
        self.seconds += result.timings.get("motion", 0.0)


async def busy_fps(
    server: EmbeddedTritonServer, clip: Path, cameras: int, gated: bool, seconds: float
) -> BusyRun:
    """`cameras` cameras playing the clip as fast as the pipeline takes it."""
    config = _config(
        server.grpc_url,
        [{"name": f"cam{i}", "url": str(clip), "loop": True, "pacing": "fast",
          "motion": {"enabled": gated}} for i in range(cameras)],
        max(cameras, 8),
    )
    motion = _MotionTime()
    pipeline = build_pipeline(config, observers=[motion])
    try:
        await pipeline.start()
        await asyncio.sleep(WARMUP_S)
        before = sum(c.processed for c in pipeline.registry.cameras().values())
        cpu = process_cpu_s() + tree_cpu_s(server.pid)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        processed = sum(c.processed for c in pipeline.registry.cameras().values()) - before
        elapsed = time.monotonic() - started
        cpu = process_cpu_s() + tree_cpu_s(server.pid) - cpu
        gated_frames = sum(c.gated for c in pipeline.registry.cameras().values())
    finally:
        await pipeline.stop()
    if gated_frames:
        print(f"    note: {gated_frames} frames of the busy clip were gated", flush=True)
    return BusyRun(
        gated=gated,
        fps=round(processed / elapsed, 1),
        cpu_ms_per_frame=round(MS * cpu / processed, 2) if processed else 0.0,
        motion_ms_per_frame=round(MS * motion.seconds / motion.frames, 3) if motion.frames else 0.0,
    )


def motion_cpu_ms(clip: Path, frames: int = 200) -> float:
    """CPU ms (this thread's clock) the motion detector spends per frame of the clip, alone."""
    detector = MotionDetector(MotionConfig())
    images: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        for decoded in container.decode(video=0):
            images.append(decoded.to_ndarray(format="bgr24"))
            if len(images) >= frames:
                break
    started = time.thread_time()
    for image in images:
        detector.measure(image)
    return MS * (time.thread_time() - started) / max(1, len(images))


async def run_benchmark(args: argparse.Namespace, clip: Path) -> dict[str, Any]:
    seconds = float(args.duration)
    repeats = max(1, int(getattr(args, "repeat", 2)))
    cost_cameras = max(int(n) for n in str(args.cameras).split(",") if n)
    footage = build_idle_footage()
    footages = [rotated(footage, phase * PHASE_FRAMES) for phase in range(PHASES)]
    print(
        f"gating: idle footage {footage.path} ({footage.frames} frames, people "
        f"{footage.busy_share:.0%} of the time), {len(footages)} rotations; {os.cpu_count()} CPUs, "
        f"{seconds:.0f}s per run",
        flush=True,
    )
    async with detector_server(args.ort_threads) as server:
        url = server.grpc_url
        print("  capacity at 10 FPS per camera (pass: every camera >= 9.5 FPS, p95 < 500 ms):")
        ungated_best, ungated_probes = await capacity(server, footages, False, seconds)
        gated_best, gated_probes = await capacity(server, footages, True, seconds)
        print("  recall of the gated run against the ungated one (one camera, every frame):")
        ungated_results = await played_once(url, footage, gated=False)
        gated_results = await played_once(url, footage, gated=True)
        recall = compare_runs(ungated_results, gated_results, footage)
        print(f"  cost on the always-busy clip {clip.name}, {cost_cameras} cameras, fast pacing:")
        busy_runs: list[tuple[BusyRun, BusyRun]] = []
        for _repeat in range(repeats):
            ungated_run = await busy_fps(server, clip, cost_cameras, False, seconds)
            gated_run = await busy_fps(server, clip, cost_cameras, True, seconds)
            busy_runs.append((ungated_run, gated_run))
            print(
                f"    ungated {ungated_run.fps:.1f} FPS ({ungated_run.cpu_ms_per_frame:.1f} CPU "
                f"ms/frame), gated {gated_run.fps:.1f} FPS ({gated_run.cpu_ms_per_frame:.1f} CPU "
                f"ms/frame, motion {gated_run.motion_ms_per_frame:.2f} ms/frame)",
                flush=True,
            )
    alone_ms = motion_cpu_ms(clip)
    cpu_per_frame = [u.cpu_ms_per_frame for u, _g in busy_runs if u.cpu_ms_per_frame]
    plain = [u.fps for u, _g in busy_runs]
    with_gate = [g.fps for _u, g in busy_runs]
    motion_ms = [g.motion_ms_per_frame for _u, g in busy_runs]
    motion_share = [
        g.motion_ms_per_frame / u.cpu_ms_per_frame for u, g in busy_runs if u.cpu_ms_per_frame
    ]
    ratio = max(gated_best, 1) / max(ungated_best, 1)
    cpu_ungated = _cpu_per_camera(ungated_probes)
    cpu_gated = _cpu_per_camera(gated_probes)
    costs = [1 - g / p for g, p in zip(with_gate, plain, strict=True) if p > 0]
    delays = recall.delay_frames
    print(
        f"  cameras sustained at 10 FPS: ungated {ungated_best}, gated {gated_best} "
        f"({ratio:.1f}x; target >= 3x)"
    )
    print(
        f"  CPU per camera at 10 FPS (service + server, ms per second, median over the runs): "
        f"ungated {cpu_ungated:.0f}, gated {cpu_gated:.0f}: "
        f"{cpu_ungated / cpu_gated if cpu_gated else 0:.1f}x fewer cores per camera with gating; "
        f"{os.cpu_count()} cores would hold about {_cores_hold(cpu_ungated)} ungated, "
        f"{_cores_hold(cpu_gated)} gated (CPU only; other load on the machine shifts this least)"
    )
    print(
        f"  track recall (gated vs ungated, IoU >= {MATCH_IOU}, tracks >= {MIN_TRACK_FRAMES} frames): "
        f"{recall.recalled}/{recall.tracks} = {recall.recall:.3f} (target >= 0.98); "
        f"gated run detected {recall.detected_share:.0%} of frames"
    )
    print(
        "  new-track lateness, gated - ungated `new` frame per matched track: "
        + (f"mean {np.mean(delays):.2f}, max {max(delays)} frames" if delays else "-")
    )
    print(
        f"  frames from a group's appearance to its first `new`: ungated {recall.appearance_ungated}, "
        f"gated {recall.appearance_gated}"
    )
    print(
        f"  busy clip FPS: ungated {Span.of(plain).text()}, gated {Span.of(with_gate).text()}; "
        f"cost {Span.of(costs).text(3) if costs else '-'} (target < 0.03; FPS on a shared machine "
        f"is noisy: the next line is the steadier figure)"
    )
    print(
        f"  motion detector: {Span.of(motion_ms).text(2)} ms per frame wall time in the camera "
        f"threads = {Span.of(motion_share).text(3)} of the ungated CPU ms per frame (service + "
        f"server); alone, {alone_ms:.2f} CPU ms per frame = "
        f"{Span.of(alone_ms / c for c in cpu_per_frame).text(3)} of it"
    )
    return {
        "footage": {"path": str(footage.path), "frames": footage.frames, "busy": footage.busy},
        "capacity": {
            "ungated": ungated_best,
            "gated": gated_best,
            "ratio": round(ratio, 2),
            "cpu_ms_per_camera_s": {"ungated": cpu_ungated, "gated": cpu_gated},
            "probes": [asdict(p) for p in ungated_probes + gated_probes],
        },
        "recall": asdict(recall),
        "busy_cost": {
            "cameras": cost_cameras,
            "ungated_fps": plain,
            "gated_fps": with_gate,
            "cost": Span.of(costs).as_dict(),
            "motion_ms_per_frame": motion_ms,
            "motion_cpu_ms_per_frame_alone": round(alone_ms, 3),
            "motion_share_of_cpu": Span.of(motion_share).as_dict(),
            "runs": [asdict(run) for pair in busy_runs for run in pair],
        },
    }
