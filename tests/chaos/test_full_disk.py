"""A disk that fills up under a running service, on a real tmpfs (issue 25, finding 4).

Event pictures on an 8 MB tmpfs that a filler file fills while the cameras run: pictures pause with
one line (no traceback per event), every drop is counted in Prometheus and on the dashboard, and
they resume by themselves within seconds once space is back. Both ways of running out: the disk
itself refusing writes (`min_free_mb: 0`), and the free-space floor reached (`min_free_mb: 1`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path

import aiohttp
import pytest

from streamer.assembly import build_pipeline, build_stages
from streamer.config import StreamerConfig
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.service import MetricsService
from streamer.snapshots.stats import SnapshotStats
from tests.chaos.conftest import Arrivals, wait_until
from tests.publishing.faults import tiny_filesystem

RESUME_LIMIT_S = 10.0
CHUNK = 64 * 1024
DROPS = 6  # pictures dropped while full: enough to see they are told once, not one by one


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """A filler file taking the filesystem's free space down to `leave_bytes` (0: a real ENOSPC)."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if leave_bytes and free <= leave_bytes + CHUNK:
                break
            try:
                os.write(descriptor, b"\0" * (CHUNK if free > 2 * CHUNK else 4096))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(descriptor)
    return filler


def stage_stats(pipeline: object) -> SnapshotStats:
    stats = pipeline.registry.read("stage")["snapshots"]  # type: ignore[attr-defined]
    assert isinstance(stats, SnapshotStats)
    return stats


@pytest.mark.parametrize(("min_free_mb", "counter"), [(0, "dropped_disk_full"), (1, "dropped_disk_floor")],
                         ids=["disk-full", "floor"])
async def test_a_full_disk_pauses_pictures_with_one_line_counts_every_drop_and_resumes(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, min_free_mb: int, counter: str,
) -> None:
    with tiny_filesystem(tmp_path / "disk", "8m") as disk:
        config = StreamerConfig.model_validate({
            "triton": {"mode": "external", "url": embedded_triton.grpc_url},
            "snapshots": {"enabled": True, "directory": str(disk / "snapshots"),
                          "min_free_mb": min_free_mb, "min_track_frames": 1, "max_total_mb": 2},
            "publishing": {"jsonl": {"enabled": False}},
            "dashboard": {"port": 0},
            "cameras": [{"name": f"cam{i}", "url": str(sample_clip), "loop": True} for i in range(2)],
        })
        arrivals = Arrivals()
        pipeline = build_pipeline(config, stages=build_stages(config), observers=[arrivals])
        metrics = MetricsService(config, pipeline.registry)
        await metrics.start()
        try:
            with caplog.at_level(logging.INFO):
                await pipeline.start()
                stats = stage_stats(pipeline)
                await wait_until(lambda: stats.written >= 3, "pictures written")
                filler = fill(disk, leave_bytes=0 if min_free_mb == 0 else 512 * 1024)
                filled = time.monotonic()
                await wait_until(lambda: getattr(stats, counter) >= DROPS, "pictures dropped")
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{metrics.url}/metrics") as answer:
                        exported = await answer.text()
                    async with session.get(f"{metrics.url}/readyz") as answer:
                        ready = await answer.json()
                state = metrics.server.state() if metrics.server is not None else {}
                dropped_while_full = getattr(stats, counter)
                paused_for_s = time.monotonic() - filled

                filler.unlink()
                freed = time.monotonic()
                written = stats.written
                await wait_until(lambda: stats.written > written, "pictures written again",
                                 limit_s=RESUME_LIMIT_S)
                resumed_after_s = time.monotonic() - freed
        finally:
            await pipeline.stop()
            await metrics.stop()

    records = [r for r in caplog.records if r.name.startswith("streamer.snapshots")]
    paused = [r.getMessage() for r in records if "pictures paused" in r.getMessage()]
    resumed = [r.getMessage() for r in records if "pictures resumed" in r.getMessage()]
    assert len(paused) == 1, f"one line per interval, not per event ({paused_for_s:.0f} s): {paused}"
    assert ("disk full" if min_free_mb == 0 else "floor reached") in paused[0]
    assert len(resumed) == 1 and re.search(r"\d+ pictures and \d+ events dropped since", resumed[0])
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], "no traceback"
    assert resumed_after_s < RESUME_LIMIT_S
    # every drop counted: Prometheus, the dashboard's state, readiness
    match = re.search(rf'streamer_stage_{counter}_total{{stage="snapshots"}} (\d+)', exported)
    assert match is not None and int(float(match.group(1))) >= DROPS, exported[-2000:]
    part = next(p for p in state["parts"] if p["name"] == "snapshots")
    assert part["state"] == "degraded" and "dropped since" in part["problem"]
    assert any(r.startswith("snapshots degraded: pictures paused") for r in ready["reasons"])
    assert dropped_while_full >= DROPS
