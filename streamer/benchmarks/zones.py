"""The cost of zones and lines per frame: `streamer bench --sections zones` (a micro-benchmark).

8 cameras, each with 5 zones (hexagons) and 5 lines (segments across the picture), and 20 people
walking in straight lines with detector jitter, as published by the tracker. Every frame of every
camera goes through `ZoneLineStage.process`, as the pipeline calls it; no model, no video. The
figures are microseconds per camera frame (wall and process CPU), the minimum over rounds (these
machines are shared and noisy), and the events produced, so the work is known to be real.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streamer.analytics.stage import ZoneLineStage
from streamer.benchmarks.scenes import walking_people
from streamer.config import StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import TrackEvent
from streamer.core.frames import Frame, FrameResult

US = 1_000_000.0
WIDTH, HEIGHT = 1280, 720
PEOPLE = 20
FRAMES = 300
ROUNDS = 5


@dataclass
class ZonesResult:
    cameras: int
    zones_per_camera: int
    lines_per_camera: int
    people: int
    frames_per_camera: int
    wall_us_per_camera_frame: float
    cpu_us_per_camera_frame: float
    events_per_round: int

    def lines(self) -> list[str]:
        return [
            f"  {self.cameras} cameras x ({self.zones_per_camera} zones + {self.lines_per_camera} "
            f"lines), {self.people} people, {self.frames_per_camera} frames each:",
            f"  {self.wall_us_per_camera_frame:.1f} us wall, {self.cpu_us_per_camera_frame:.1f} us "
            f"CPU per camera frame ({self.cameras * self.wall_us_per_camera_frame:.0f} us for one "
            f"frame of every camera); {self.events_per_round} zone/line events per round",
        ]


class _Book:
    """Every track counts (seen often enough): the stage's full per-frame path."""

    def frames_seen(self, track_id: int) -> int:
        return 1_000

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> TrackEvent | None:
        return None


def _hexagon(cx: float, cy: float, radius: float) -> list[list[float]]:
    angles = np.arange(6) * np.pi / 3
    return [[round(cx + radius * np.cos(a), 1), round(cy + radius * np.sin(a), 1)] for a in angles]


def site(cameras: int, zones: int, lines: int) -> StreamerConfig:
    """`cameras` cameras with `zones` zones spread along the picture and `lines` lines across it."""
    camera_zones = [
        {"name": f"zone-{i}", "points": _hexagon(WIDTH * (i + 0.5) / zones, HEIGHT / 2, 0.45 * WIDTH / zones),
         "loiter_after_s": 5.0}
        for i in range(zones)
    ]
    camera_lines = [
        {"name": f"line-{i}",
         "points": [[WIDTH * (i + 0.5) / lines, 40], [WIDTH * (i + 0.5) / lines + 60, HEIGHT - 40]]}
        for i in range(lines)
    ]
    return StreamerConfig.model_validate({
        "analytics": {"min_track_frames": 1},
        "cameras": [
            {"name": f"cam-{c}", "url": "bench.mp4", "zones": camera_zones, "lines": camera_lines}
            for c in range(cameras)
        ],
    })


async def _round(
    stage: ZoneLineStage, cameras: list[str], frames: list[Detections]
) -> tuple[float, float, int]:
    book = _Book()
    image = np.zeros((1, 1, 3), np.uint8)
    events = 0
    wall = cpu = 0.0
    for index, tracks in enumerate(frames):
        ts = 1_700_000_000.0 + index / 10
        for camera in cameras:
            frame = Frame(camera, index, ts, 0.0, image)
            result = FrameResult(camera, index, ts, WIDTH, HEIGHT, tracks, 0.0, {})
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            await stage.process(frame, result, book)
            wall += time.perf_counter() - wall_start
            cpu += time.process_time() - cpu_start
            events += len(result.events)
    return wall, cpu, events


async def run_benchmark(
    cameras: int = 8, zones: int = 5, lines: int = 5, people: int = PEOPLE, rounds: int = ROUNDS
) -> ZonesResult:
    boxes = walking_people(people, FRAMES)
    ids = np.arange(1, people + 1, dtype=np.int64)
    frames = [
        Detections(b.astype(np.float32), np.full(people, 0.9, np.float32),
                   np.zeros(people, np.int64), ids)
        for b in boxes
    ]
    config = site(cameras, zones, lines)
    names = [camera.name for camera in config.cameras]
    best_wall = best_cpu = float("inf")
    events = 0
    for _ in range(rounds):
        stage = ZoneLineStage(config)
        wall, cpu, events = await _round(stage, names, frames)
        calls = len(frames) * len(names)
        best_wall, best_cpu = min(best_wall, wall / calls * US), min(best_cpu, cpu / calls * US)
    return ZonesResult(cameras, zones, lines, people, FRAMES, round(best_wall, 1),
                       round(best_cpu, 1), events)


def as_dict(result: ZonesResult) -> dict[str, Any]:
    return asdict(result)


if __name__ == "__main__":
    print("\n".join(asyncio.run(run_benchmark()).lines()))
