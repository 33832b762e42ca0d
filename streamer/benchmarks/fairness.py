"""`streamer bench --sections fairness`: per-camera processed FPS when cameras ask for more than
the detector gives, with some cameras flooding frames.

The normal cameras play the clip in real time; the flooding ones play a copy of it whose
timestamps are 100 times closer together (1,000 FPS for the 10 FPS sample: what a file with
broken timestamps looks like), also in real time. Fair means: the normal cameras get the same
processed FPS (their spread, max / min, near 1), and a flooding camera gets no more than a normal
camera's share.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.frames import FrameResult

FLOOD_SPEEDUP = 100
WARMUP_S = 3.0
MS = 1000.0


def flooding_clip(clip: Path, target: Path, speedup: int = FLOOD_SPEEDUP) -> Path:
    """The clip's packets, remuxed with timestamps `speedup` times closer together."""
    with av.open(str(clip)) as source, av.open(str(target), "w") as copy:
        video = source.streams.video[0]
        out = copy.add_stream_from_template(video)
        assert video.time_base is not None
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's final empty packet
                continue
            packet.time_base = video.time_base / speedup
            packet.stream = out
            copy.mux(packet)
    return target


@dataclass
class CameraShare:
    name: str
    flooding: bool
    weight: float
    fps: float  # processed per second in the window
    decoded_fps: float
    latency_p95_ms: float


@dataclass
class FairnessRun:
    cameras: list[CameraShare] = field(default_factory=list)
    total_fps: float = 0.0

    def normal(self) -> list[CameraShare]:
        return [c for c in self.cameras if not c.flooding]

    def spread(self) -> float:
        """max / min processed FPS per unit of weight over the normal cameras (1.0 is perfect)."""
        shares = [c.fps / c.weight for c in self.normal()]
        return max(shares) / min(shares) if shares and min(shares) > 0 else float("inf")

    def flood_over_normal(self) -> float:
        """The busiest flooding camera's FPS over the normal cameras' mean (per unit of weight)."""
        normal = [c.fps / c.weight for c in self.normal()]
        flooding = [c.fps / c.weight for c in self.cameras if c.flooding]
        if not normal or not flooding or not np.mean(normal):
            return 0.0
        return float(max(flooding) / np.mean(normal))

    def lines(self) -> list[str]:
        lines = [f"    {'camera':>8} {'kind':>8} {'weight':>6} {'FPS':>7} {'decoded':>8} {'p95 ms':>8}"]
        for c in self.cameras:
            kind = "flooding" if c.flooding else "normal"
            lines.append(
                f"    {c.name:>8} {kind:>8} {c.weight:>6.1f} {c.fps:>7.1f} {c.decoded_fps:>8.1f} "
                f"{c.latency_p95_ms:>8.0f}"
            )
        lines.append(
            f"    total {self.total_fps:.1f} FPS; normal cameras' spread (max/min) {self.spread():.2f}; "
            f"busiest flooding camera / normal mean {self.flood_over_normal():.2f}"
        )
        return lines


class _PerCamera:
    def __init__(self) -> None:
        self.recording = False
        self.latencies: dict[str, list[float]] = {}

    def observe(self, result: FrameResult) -> None:
        if self.recording:
            self.latencies.setdefault(result.camera, []).append(result.latency_s)


async def fairness_run(
    grpc_url: str, clip: Path, flood: Path, *, normal: int, flooding: int, seconds: float
) -> FairnessRun:
    cameras = [
        {"name": f"cam{i}", "url": str(clip), "loop": True, "pacing": "realtime"} for i in range(normal)
    ] + [
        {"name": f"flood{i}", "url": str(flood), "loop": True, "pacing": "realtime"}
        for i in range(flooding)
    ]
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": grpc_url},
            "inference": {"requests_in_flight": max(8, len(cameras))},
            "publishing": {"jsonl": {"enabled": False}},
            "cameras": cameras,
        }
    )
    observer = _PerCamera()
    pipeline = build_pipeline(config, observers=[observer])
    try:
        await pipeline.start()
        await asyncio.sleep(WARMUP_S)
        stats = pipeline.registry.cameras()
        before = {name: (c.processed, c.decoded) for name, c in stats.items()}
        observer.recording = True
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        observer.recording = False
        after = {name: (c.processed, c.decoded) for name, c in stats.items()}
    finally:
        await pipeline.stop()
    run = FairnessRun()
    for camera in config.cameras:
        processed = after[camera.name][0] - before[camera.name][0]
        decoded = after[camera.name][1] - before[camera.name][1]
        latencies = observer.latencies.get(camera.name, [])
        run.cameras.append(
            CameraShare(
                name=camera.name,
                flooding=camera.name.startswith("flood"),
                weight=getattr(camera, "weight", 1.0),
                fps=round(processed / elapsed, 2),
                decoded_fps=round(decoded / elapsed, 1),
                latency_p95_ms=round(float(np.percentile(latencies, 95)) * MS, 1) if latencies else 0.0,
            )
        )
    run.total_fps = round(sum(c.fps for c in run.cameras), 1)
    return run
