"""A long run with one real fault every minute: healing, health surfaces, drops, memory.

    python -m studies.soak --minutes 10 --cameras 8 --output soak.json

Eight cameras (half RTSP from a real GStreamer server, half looping files), the embedded Triton,
real Redis and Mosquitto, event pictures and the spill files on a real tmpfs (needs root to
mount it). Every `--every` seconds one fault, in turn: kill -9 of the embedded tritonserver, kill -9
of its Python-backend stubs (the server stays up and says ready), the RTSP server killed for a few
seconds, the Redis broker restarted, and a full disk (the tmpfs filled while Redis is down, so
pictures pause and the spill file cannot be written; freed after DISK_FULL_S).

It reports the frames processed; for each fault the time from its end to the first processed frame
of the cameras it touched; every moment a health surface (`/readyz`, `inference.up`, the sinks'
availability) said "fine" while no camera had processed a frame for HEALTH_GRACE_S; the drops
counted (pictures, index entries, sink events) and the most lines logged about them within one
interval; the pictures the events index names that are not on disk at the end (expect 0); the
lifecycle events produced versus delivered to Redis after de-duplication (lost only while the
disk was full, and counted); and the service's RSS at start and end. Bounded, but long.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from streamer.assembly import build_pipeline, build_sinks, build_stages
from streamer.config import StreamerConfig
from streamer.core.events import CameraStatusEvent, Event, TrackEvent
from streamer.core.frames import FrameResult
from streamer.core.interfaces import Sink
from streamer.metrics.service import MetricsService
from streamer.pipeline import Pipeline
from streamer.publishing.messages import AVAILABLE_ONLINE
from streamer.snapshots.archive import INDEX_FILE, picture_path
from streamer.snapshots.trouble import REPORT_INTERVAL_S
from tests.chaos.conftest import backend_stubs, signal_all
from tests.chaos.test_full_disk import fill
from tests.publishing.brokers import BrokerProcess, mosquitto, redis_server
from tests.support.checkout import SAMPLE_CLIP as CLIP
from tests.support.rtsp import RtspServer

RTSP_OUTAGE_S = 3.0
PREFIX = "soak"
LIFECYCLE = {"new", "update", "end"}
OTHERS_WINDOW_S = 10.0
RESUME_GAP_S = 0.5  # the cameras deliver 10 results a second: a longer pause is an outage
DISK_SIZE = "64m"
DISK_FULL_S = 20.0  # long enough for the spill files to need a write (64 kB of events)
SPILL_REWRITE_S = 3.0
HEALTH_GRACE_S = 4.0  # a model is known down a few failed requests after its backend died
SAMPLE_S = 0.2
FAULTS = ["stub", "disk", "triton", "rtsp", "broker"]
# The lines told about drops, per teller: each at most once per its interval.
DROP_LINES = ("pictures paused", "redis: dropped ", "mqtt: dropped ", "redis: cannot write spill file",
              "mqtt: cannot write spill file")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Ledger(Sink):
    """Every lifecycle event the pipeline produced, as the sinks received it, and the
    availability the pipeline announced to them."""

    name = "ledger"

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.results: dict[str, list[float]] = defaultdict(list)
        self.availability = AVAILABLE_ONLINE

    def publish_availability(self, availability: str) -> None:
        self.availability = availability

    def last_result(self) -> float:
        return max((times[-1] for times in self.results.values() if times), default=0.0)

    def publish_frame(self, result: FrameResult) -> None:
        self.results[result.camera].append(time.monotonic())

    def publish_events(self, events: Sequence[Event]) -> None:
        self.event_ids.update(e.id for e in events if isinstance(e, TrackEvent))

    def publish_status(self, status: CameraStatusEvent) -> None:
        pass

    async def stop(self) -> None:
        pass

    def rate(self, cameras: list[str], start: float, end: float) -> float:
        """Results per second of `cameras` together between `start` and `end`."""
        count = sum(start <= t < end for camera in cameras for t in self.results[camera])
        return count / (end - start)

    def resumed(self, cameras: list[str], fault_at: float, ended: float) -> float | None:
        """When results flowed again for every one of `cameras` after a fault (the slowest).

        Results of frames already in flight may still arrive just after the fault: the camera is
        back at the first result that follows the outage's gap (a pause of RESUME_GAP_S or more).
        """
        latest = ended
        for camera in cameras:
            times = [t for t in self.results[camera] if t > fault_at]
            previous, back = fault_at, None
            for moment in times:
                if moment - previous >= RESUME_GAP_S:
                    back = moment
                    break
                previous = moment
            if back is None:
                if not times:
                    return None
                back = times[0]  # no visible gap: never interrupted
            latest = max(latest, back)
        return latest


@dataclass
class Fault:
    kind: str
    at_s: float
    ended_s: float
    cameras: list[str]
    frames_again_after_s: float | None = None
    rss_mib: float = 0.0  # the service's RSS just before the fault
    others_fps_ratio: float | None = None  # untouched cameras: FPS in the 10 s after / 10 s before


@dataclass
class Report:
    minutes: float
    cameras: int
    frames_processed: int = 0
    events_produced: int = 0
    events_delivered_unique: int = 0
    events_lost: int = 0
    sink_events_dropped_counted: int = 0  # what the sinks counted as dropped (the full disk)
    health_samples: int = 0
    said_fine_while_not_processing: list[dict[str, Any]] = field(default_factory=list)
    inference_up_samples_without_frames: int = 0
    drops_counted: dict[str, int] = field(default_factory=dict)
    drop_lines: dict[str, int] = field(default_factory=dict)
    most_drop_lines_in_one_interval: dict[str, int] = field(default_factory=dict)
    pictures_indexed_at_end: int = 0
    pictures_indexed_but_missing: int = 0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    faults: list[Fault] = field(default_factory=list)


class LogLines(logging.Handler):
    """The service's log lines about drops (when, what), to count them per interval."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and any(key in message for key in DROP_LINES):
            self.lines.append((time.monotonic(), message))
        if record.levelno >= logging.WARNING or "resumed" in message or "written again" in message:
            print(f"    {record.levelname} {record.name}: {message[:160]}", flush=True)

    def most_in_one_interval(self, key: str, interval_s: float) -> int:
        times = [at for at, message in self.lines if key in message]
        return max((sum(t0 <= t < t0 + interval_s for t in times) for t0 in times), default=0)


class HealthWatch:
    """Every health surface, sampled: the moments one said "fine" while nothing was processed."""

    def __init__(self, metrics: MetricsService, ledger: Ledger) -> None:
        self.metrics, self.ledger = metrics, ledger
        self.samples = 0
        self.false_fine: list[dict[str, Any]] = []
        self.inference_up_without_frames = 0  # e.g. the moment between a restart and its frame

    async def run(self) -> None:
        server = self.metrics.server
        assert server is not None
        while True:
            await asyncio.sleep(SAMPLE_S)
            since = time.monotonic() - self.ledger.last_result()
            ready, body = server.readiness()
            inference = server.state().get("inference") or {}
            self.samples += 1
            fine = {"readyz": ready, "available": self.ledger.availability == AVAILABLE_ONLINE}
            if since > HEALTH_GRACE_S and (fine["readyz"] or fine["available"]):
                self.false_fine.append(
                    {"since_frame_s": round(since, 1), **fine, "reasons": body["reasons"][:3]}
                )
            if since > HEALTH_GRACE_S and inference.get("up"):
                self.inference_up_without_frames += 1


def mount_disk(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(folder)],
                   check=True, capture_output=True)


def unmount_disk(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


async def inject(
    kind: str, pipeline: Pipeline, rtsp: RtspServer, broker: BrokerProcess, disk: Path
) -> None:
    if kind == "triton":
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
    elif kind == "stub":  # the server stays up and keeps saying "ready"
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        signal_all(backend_stubs(server.pid), signal.SIGKILL)
    elif kind == "rtsp":
        rtsp.stop()
        await asyncio.sleep(RTSP_OUTAGE_S)
        await asyncio.to_thread(rtsp.start)
    elif kind == "disk":  # the disk full under the pictures and the spill files, Redis down
        filler = await asyncio.to_thread(fill, disk)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(DISK_FULL_S)
        filler.unlink()
        await asyncio.sleep(SPILL_REWRITE_S)  # space back: the spill file written again
        await asyncio.to_thread(broker.start)
    else:
        await asyncio.to_thread(broker.restart)


def pictures_missing(directory: Path) -> tuple[int, int]:
    """(pictures the index names, of which not on disk): nothing it names may be deleted."""
    db = sqlite3.connect(f"file:{directory / INDEX_FILE}?mode=ro", uri=True)
    try:
        named = {row[0] for row in db.execute("SELECT id FROM snapshots")}
        pictured = db.execute("SELECT snapshot_id FROM events WHERE snapshot_id IS NOT NULL")
        named |= {row[0] for row in pictured}
    finally:
        db.close()
    missing = [sid for sid in named if not picture_path(directory, sid).exists()]
    return len(named), len(missing)


async def delivered_ids(port: int, cameras: list[str]) -> set[str]:
    ids: set[str] = set()
    async with redis.Redis(port=port) as client:
        for camera in cameras:
            for _id, fields in await client.xrange(f"{PREFIX}:{camera}:events"):
                if fields[b"type"].decode() in LIFECYCLE:
                    ids.add(fields[b"id"].decode())
    return ids


async def soak(minutes: float, cameras: int, every_s: float, scratch: Path) -> Report:
    rtsp_count = cameras // 2
    rtsp = RtspServer({f"/cam{i}": CLIP for i in range(rtsp_count)})
    rtsp.start()
    redis_broker, mqtt_broker = redis_server(scratch / "redis"), mosquitto(scratch / "mqtt")
    redis_broker.start()
    mqtt_broker.start()
    disk = scratch / "disk"
    mount_disk(disk)
    names = [f"rtsp{i}" for i in range(rtsp_count)] + [f"file{i}" for i in range(cameras - rtsp_count)]
    reconnect = {"initial_delay_s": 0.2, "max_delay_s": 2.0}
    delivery = {"spill_dir": str(disk / "spill"), "memory_events": 20}
    config = StreamerConfig.model_validate({
        "triton": {"mode": "embedded", "health_interval_s": 1.0},
        "publishing": {
            "jsonl": {"enabled": False},
            "redis": {"enabled": True, "port": redis_broker.port, "key_prefix": PREFIX,
                      "delivery": delivery},
            "mqtt": {"enabled": True, "port": mqtt_broker.port, "topic_prefix": PREFIX,
                     "delivery": delivery},
        },
        "snapshots": {"enabled": True, "directory": str(disk / "snapshots"), "min_free_mb": 0,
                      "max_total_mb": 24, "prune_interval_s": 5},
        "metrics": {"stall_after_s": 2.0},
        "dashboard": {"port": 0},
        "cameras": [
            {"name": name, "url": rtsp.url(f"/cam{i}"), "reconnect": reconnect,
             "open_timeout_s": 3, "read_timeout_s": 3}
            for i, name in enumerate(names[:rtsp_count])
        ] + [{"name": name, "url": str(CLIP), "loop": True} for name in names[rtsp_count:]],
    })
    ledger = Ledger()
    sinks = build_sinks(config)
    pipeline = build_pipeline(config, sinks=[ledger, *sinks], stages=build_stages(config))
    metrics = MetricsService(config, pipeline.registry)
    watch = HealthWatch(metrics, ledger)
    lines = LogLines()
    logging.getLogger("streamer").addHandler(lines)
    logging.getLogger("streamer").setLevel(logging.INFO)
    report = Report(minutes=minutes, cameras=cameras)
    started = time.monotonic()
    watcher: asyncio.Task[None] | None = None
    try:
        await metrics.start()
        await pipeline.start()
        await asyncio.sleep(5)
        watcher = asyncio.create_task(watch.run())
        report.rss_start_mib = round(rss_mib(), 1)
        index = 0
        while time.monotonic() - started < minutes * 60 - every_s / 2:
            await asyncio.sleep(every_s)
            kind = FAULTS[index % len(FAULTS)]
            index += 1
            rss = round(rss_mib(), 1)
            at = time.monotonic()
            touched = names if kind in ("triton", "stub") else names[:rtsp_count] if kind == "rtsp" else []
            await inject(kind, pipeline, rtsp, redis_broker, disk)
            ended = time.monotonic()
            report.faults.append(
                Fault(kind, round(at - started, 1), round(ended - started, 1), touched, rss_mib=rss)
            )
            print(f"{ended - started:7.1f}s fault: {kind}", flush=True)
        await asyncio.sleep(every_s / 2)
        for fault in report.faults:
            at, ended = started + fault.at_s, started + fault.ended_s
            if fault.cameras:
                back = ledger.resumed(fault.cameras, at, ended)
                fault.frames_again_after_s = None if back is None else round(back - ended, 1)
            others = [name for name in names if name not in fault.cameras]
            if others:
                before = ledger.rate(others, at - OTHERS_WINDOW_S, at)
                after = ledger.rate(others, at, at + OTHERS_WINDOW_S)
                fault.others_fps_ratio = round(after / before, 3) if before else None
        report.rss_end_mib = round(rss_mib(), 1)
    finally:
        if watcher is not None:
            watcher.cancel()
        await pipeline.stop()
        await metrics.stop()
        rtsp.terminate()
        logging.getLogger("streamer").removeHandler(lines)
    report.frames_processed = sum(s.processed for s in pipeline.registry.cameras().values())
    report.health_samples = watch.samples
    report.said_fine_while_not_processing = watch.false_fine
    report.inference_up_samples_without_frames = watch.inference_up_without_frames
    snapshots = pipeline.registry.read("stage").get("snapshots")  # type: ignore[arg-type]
    if snapshots is not None:
        report.drops_counted = {
            key: getattr(snapshots, key)
            for key in ("written", "dropped_disk_full", "dropped_disk_floor", "index_dropped",
                        "dropped_queue_full", "write_errors", "adopted", "deleted_orphans")
        }
    report.sink_events_dropped_counted = sum(sink.stats().dropped for sink in sinks)
    sink_interval_s = config.publishing.redis.delivery.log_interval_s
    for key in DROP_LINES:
        report.drop_lines[key] = sum(key in message for _at, message in lines.lines)
        interval = REPORT_INTERVAL_S if key == "pictures paused" else sink_interval_s
        report.most_drop_lines_in_one_interval[key] = lines.most_in_one_interval(key, interval)
    report.pictures_indexed_at_end, report.pictures_indexed_but_missing = pictures_missing(
        disk / "snapshots"
    )
    delivered = await delivered_ids(redis_broker.port, names)
    report.events_produced = len(ledger.event_ids)
    report.events_delivered_unique = len(delivered & ledger.event_ids)
    report.events_lost = len(ledger.event_ids - delivered)
    redis_broker.stop()
    mqtt_broker.stop()
    unmount_disk(disk)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-soak-") as scratch:
        report = asyncio.run(soak(args.minutes, args.cameras, args.every, Path(scratch)))
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
