"""Cameras at runtime, measured: `python -m studies.cameras_at_runtime` (about 8 minutes).

Prints (1) the time from `POST /api/cameras` to the new camera's first processed frame, (2) the
other cameras' processed FPS while 16 cameras are added and then 16 removed, one every 2 s
(cameras that cannot connect: the cost of the changes; then streaming ones: plus their load), and
(3) RSS, open file descriptors, threads, /dev/shm entries and Prometheus camera series before and
after 100 add/remove cycles. A real service (embedded Triton, the detector from the assets
folder) with two looping file cameras; the added cameras read a real RTSP server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from streamer.app import Service
from streamer.config import load_config
from streamer.core.frames import FrameResult
from streamer.inference.catalog import entry, prepare
from tests.control.support import AUTH, TOKEN
from tests.support.checkout import SAMPLE_CLIP as CLIP
from tests.support.rtsp import RtspServer

OTHER_CAMERAS = ("lobby", "yard")
DETECTOR = "person_detector"
UNREACHABLE_URL = "rtsp://127.0.0.1:9/none"  # refused at once: the camera waits in backoff


class FirstFrames:
    """Pipeline observer: the monotonic time of each camera's first result after `expect()`."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Event] = {}

    def expect(self, camera: str) -> asyncio.Event:
        self.first.pop(camera, None)
        event = self.waiting[camera] = asyncio.Event()
        return event

    def observe(self, result: FrameResult) -> None:
        event = self.waiting.pop(result.camera, None)
        if event is not None:
            self.first[result.camera] = time.monotonic()
            event.set()


def resources() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")),
        "shm_mapped": len({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                           if "/dev/shm/" in line}),  # regions this process holds
        "shm_entries": len(os.listdir("/dev/shm")),  # machine-wide: other processes count too
    }


def config_text(repository: Path, out: Path) -> str:
    cameras = "".join(
        f"  - name: {name}\n    url: {CLIP}\n    loop: true\n    max_fps: 5\n" for name in OTHER_CAMERAS
    )
    return (
        f"triton:\n  model_repository: {repository}\n  ort_threads: 1\n"
        f"publishing:\n  jsonl:\n    path: {out}\n"
        "metrics:\n  sample_interval_s: 0.5\n  rate_window_s: 2.0\n"
        f"dashboard:\n  port: 0\n  token: {TOKEN}\n"
        f"cameras:\n{cameras}"
    )


class Bench:
    def __init__(self, service: Service, url: str, rtsp_url: str, first: FirstFrames) -> None:
        self.service, self.url, self.rtsp_url, self.first = service, url, rtsp_url, first
        self.http = aiohttp.ClientSession(headers=AUTH)

    async def add(self, name: str, url: str | None = None) -> None:
        async with self.http.post(f"{self.url}/api/cameras", json={
            "name": name, "url": url or self.rtsp_url, "max_fps": 5,
        }) as response:
            assert response.status == 201, await response.text()

    async def remove(self, name: str) -> None:
        async with self.http.delete(f"{self.url}/api/cameras/{name}") as response:
            assert response.status == 204, await response.text()

    def processed(self) -> dict[str, int]:
        return {n: s.processed for n, s in self.service.stats.cameras().items() if n in OTHER_CAMERAS}

    async def camera_series(self) -> int:
        async with self.http.get(f"{self.url}/metrics") as response:
            text = await response.text()
        return sum(1 for line in text.splitlines() if 'camera="' in line and not line.startswith("#"))

    async def time_to_first_frame(self, runs: int) -> list[float]:
        times = []
        for run in range(runs):
            name = f"ttff{run}"
            arrived = self.first.expect(name)
            started = time.monotonic()
            await self.add(name)
            await asyncio.wait_for(arrived.wait(), 60)
            times.append(self.first.first[name] - started)
            await self.remove(name)
            await asyncio.sleep(1.0)
        return times

    async def fps_during_churn(self, count: int, every_s: float, url: str | None) -> dict[str, Any]:
        """Processed FPS of the other cameras per interval: baseline, while adding, while removing.

        With `url` None the added cameras stream (their decoding and detection load the machine
        too); with an unreachable URL only the add/remove work itself is measured."""
        async def rates(intervals: int, action: Any) -> list[float]:
            found = []
            for index in range(intervals):
                before, t0 = self.processed(), time.monotonic()
                if action is not None:
                    await action(index)
                await asyncio.sleep(max(0.0, every_s - (time.monotonic() - t0)))
                after, elapsed = self.processed(), time.monotonic() - t0
                found.append(min((after[n] - before[n]) / elapsed for n in OTHER_CAMERAS))
            return found

        baseline = await rates(5, None)
        adding = await rates(count, lambda i: self.add(f"churn{i}", url))
        removing = await rates(count, lambda i: self.remove(f"churn{i}"))
        return {"baseline": baseline, "adding": adding, "removing": removing}

    async def cycles(self, count: int) -> None:
        for cycle in range(count):
            name = f"cycle{cycle}"
            arrived = self.first.expect(name)
            await self.add(name)
            await asyncio.wait_for(arrived.wait(), 60)
            await self.remove(name)


def summary(values: list[float], digits: int = 2) -> str:
    return (f"median {statistics.median(values):.{digits}f}, min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f} (n={len(values)})")


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="streamer-measure-"))
    try:
        repository = folder / "models"
        prepare(entry(DETECTOR), repository)
        path = folder / "service.yaml"
        path.write_text(config_text(repository, folder / "out.jsonl"))
        with RtspServer({"door": CLIP}) as rtsp:
            service = Service(load_config(path), path)
            first = FirstFrames()
            service.pipeline.observers.append(first)
            await service.start()
            assert service.metrics.url is not None
            bench = Bench(service, service.metrics.url, rtsp.url("door"), first)
            try:
                await asyncio.sleep(5)  # the other cameras settle
                ttff = await bench.time_to_first_frame(args.first_frame_runs)
                print(f"POST /api/cameras -> first processed frame, s: {summary(ttff)}")
                for kind, url in (("unreachable", UNREACHABLE_URL), ("streaming", None)):
                    churn = await bench.fps_during_churn(args.churn, args.every_s, url)
                    base = statistics.mean(churn["baseline"])
                    for phase in ("adding", "removing"):
                        values = churn[phase]
                        print(f"other cameras' FPS (slowest of {len(OTHER_CAMERAS)}, per "
                              f"{args.every_s:g} s) while {phase} {args.churn} {kind} cameras: "
                              f"{summary(values)}; baseline {base:.2f}; worst dip "
                              f"{100 * (1 - min(values) / base):.0f}%; all: {values}")
                    await asyncio.sleep(5)
                await asyncio.sleep(5)
                before = {**resources(), "camera_series": await bench.camera_series()}
                await bench.cycles(args.cycles)
                await asyncio.sleep(5)  # let the sampler forget the last one
                after = {**resources(), "camera_series": await bench.camera_series()}
                print(f"resources before {args.cycles} add/remove cycles: {json.dumps(before)}")
                print(f"resources after  {args.cycles} add/remove cycles: {json.dumps(after)}")
            finally:
                await bench.http.close()
                await service.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-frame-runs", type=int, default=5)
    parser.add_argument("--churn", type=int, default=16)
    parser.add_argument("--every-s", type=float, default=2.0)
    parser.add_argument("--cycles", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
