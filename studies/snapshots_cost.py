"""The cost of snapshots: pipeline FPS on the sample clip without and with them, back to back.

    python -m studies.snapshots_cost [--rounds 3] [--cameras 2]

Each round runs the whole clip (pacing fast, no FPS cap) once without and once with snapshots on
the same embedded Triton; FPS = frames processed / time from first to last result, over all
cameras. Also reported: this process's CPU time per frame (steadier than FPS on a busy machine;
the inference server is another process), the snapshot stage's time on the event loop per frame
(what it can cost the pipeline directly; encoding and disk work run in the writer thread) and the
pictures written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from streamer.assembly import build_pipeline, build_stages
from streamer.config import StreamerConfig
from streamer.core.frames import FrameResult
from streamer.inference.server import EmbeddedTritonServer
from studies.faults import CLIP, DETECTOR, prepared_repository


class Timing:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.frames = 0
        self.stage_s: list[float] = []

    def observe(self, result: FrameResult) -> None:
        now = time.perf_counter()
        self.first = now if self.first is None else self.first
        self.last = now
        self.frames += 1
        if "snapshots" in result.timings:
            self.stage_s.append(result.timings["snapshots"])


async def one_run(triton_url: str, cameras: int, snapshots: Path | None) -> dict[str, Any]:
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": triton_url},
        "publishing": {"jsonl": {"enabled": False}},
        "snapshots": {"enabled": snapshots is not None, "directory": str(snapshots or "unused"),
                      "min_free_mb": 0},
        "cameras": [{"name": f"cam{i}", "url": str(CLIP), "pacing": "fast"} for i in range(cameras)],
    })
    timing = Timing()
    stages = build_stages(config)
    pipeline = build_pipeline(config, stages=stages, observers=[timing])
    cpu_started = time.process_time()
    await pipeline.start()
    await pipeline.wait()
    await pipeline.stop()
    cpu_s = time.process_time() - cpu_started  # this process: decoding, tracking, stages, writer
    assert timing.first is not None
    counters = next((getattr(s, "counters", None) for s in stages if s.name == "snapshots"), None)
    return {
        "snapshots": snapshots is not None,
        "frames": timing.frames,
        "fps": round((timing.frames - 1) / (timing.last - timing.first), 1),
        "cpu_ms_per_frame": round(cpu_s / timing.frames * 1e3, 2),
        "stage_us_per_frame": round(statistics.mean(timing.stage_s) * 1e6) if timing.stage_s else None,
        "stage_us_p99": round(sorted(timing.stage_s)[int(0.99 * (len(timing.stage_s) - 1))] * 1e6)
        if timing.stage_s else None,
        "written": getattr(counters, "written", None),
        "dropped_queue_full": getattr(counters, "dropped_queue_full", None),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cameras", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-snapshots-") as scratch:
        server = EmbeddedTritonServer(prepared_repository(Path(scratch)), [DETECTOR])
        await server.start()
        try:
            runs: list[dict[str, Any]] = []
            for round_index in range(args.rounds):
                order = (False, True) if round_index % 2 == 0 else (True, False)  # no order bias
                for with_snapshots in order:
                    folder = Path(scratch) / f"snapshots-{round_index}" if with_snapshots else None
                    run = await one_run(server.grpc_url, args.cameras, folder)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
        finally:
            await server.stop()
    for with_snapshots in (False, True):
        fps = [r["fps"] for r in runs if r["snapshots"] == with_snapshots]
        cpu = [r["cpu_ms_per_frame"] for r in runs if r["snapshots"] == with_snapshots]
        print(f"snapshots {'on ' if with_snapshots else 'off'}: FPS median {statistics.median(fps):.1f} "
              f"(min {min(fps)}, max {max(fps)}), CPU ms/frame median {statistics.median(cpu):.2f} "
              f"over {len(fps)} runs of {args.cameras} cameras")


if __name__ == "__main__":
    asyncio.run(main())
