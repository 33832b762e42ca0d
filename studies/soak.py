"""A long run with one real fault every minute: healing times, events lost, memory.

    python -m studies.soak --minutes 10 --cameras 8 --output soak.json

Eight cameras (half RTSP from a real GStreamer server, half looping files), the embedded Triton,
real Redis and Mosquitto. Every `--every` seconds one fault, in turn: kill -9 of the embedded
tritonserver, the RTSP server killed for a few seconds, the Redis broker restarted. It reports the
frames processed, for each fault the time from its end to the first processed frame of the cameras
it touched, the lifecycle events produced versus delivered to Redis after de-duplication (expect 0
lost), and the service's RSS at start and end. Bounded, but long.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis.asyncio as redis

from streamer.assembly import build_pipeline, build_sinks
from streamer.config import StreamerConfig
from streamer.core.events import CameraStatusEvent, Event, TrackEvent
from streamer.core.frames import FrameResult
from streamer.core.interfaces import Sink
from streamer.pipeline import Pipeline
from tests.publishing.brokers import BrokerProcess, mosquitto, redis_server
from tests.support.checkout import SAMPLE_CLIP as CLIP
from tests.support.rtsp import RtspServer

RTSP_OUTAGE_S = 3.0
PREFIX = "soak"
LIFECYCLE = {"new", "update", "end"}
OTHERS_WINDOW_S = 10.0
RESUME_GAP_S = 0.5  # the cameras deliver 10 results a second: a longer pause is an outage


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Ledger(Sink):
    """Every lifecycle event the pipeline produced, as the sinks received it."""

    name = "ledger"

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.results: dict[str, list[float]] = defaultdict(list)

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
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    faults: list[Fault] = field(default_factory=list)


async def inject(kind: str, pipeline: Pipeline, rtsp: RtspServer, broker: BrokerProcess) -> None:
    if kind == "triton":
        server = pipeline.triton.server
        assert server is not None and server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
    elif kind == "rtsp":
        rtsp.stop()
        await asyncio.sleep(RTSP_OUTAGE_S)
        await asyncio.to_thread(rtsp.start)
    else:
        await asyncio.to_thread(broker.restart)


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
    names = [f"rtsp{i}" for i in range(rtsp_count)] + [f"file{i}" for i in range(cameras - rtsp_count)]
    reconnect = {"initial_delay_s": 0.2, "max_delay_s": 2.0}
    config = StreamerConfig.model_validate({
        "triton": {"mode": "embedded", "health_interval_s": 1.0},
        "publishing": {
            "jsonl": {"enabled": False},
            "redis": {"enabled": True, "port": redis_broker.port, "key_prefix": PREFIX},
            "mqtt": {"enabled": True, "port": mqtt_broker.port, "topic_prefix": PREFIX},
        },
        "cameras": [
            {"name": name, "url": rtsp.url(f"/cam{i}"), "reconnect": reconnect,
             "open_timeout_s": 3, "read_timeout_s": 3}
            for i, name in enumerate(names[:rtsp_count])
        ] + [{"name": name, "url": str(CLIP), "loop": True} for name in names[rtsp_count:]],
    })
    ledger = Ledger()
    pipeline = build_pipeline(config, sinks=[ledger, *build_sinks(config)])
    report = Report(minutes=minutes, cameras=cameras)
    started = time.monotonic()
    try:
        await pipeline.start()
        await asyncio.sleep(5)
        report.rss_start_mib = round(rss_mib(), 1)
        kinds = ["triton", "rtsp", "broker"]
        index = 0
        while time.monotonic() - started < minutes * 60 - every_s / 2:
            await asyncio.sleep(every_s)
            kind = kinds[index % len(kinds)]
            index += 1
            rss = round(rss_mib(), 1)
            at = time.monotonic()
            touched = names if kind == "triton" else names[:rtsp_count] if kind == "rtsp" else []
            await inject(kind, pipeline, rtsp, redis_broker)
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
        await pipeline.stop()
        rtsp.terminate()
    report.frames_processed = sum(s.processed for s in pipeline.registry.cameras().values())
    delivered = await delivered_ids(redis_broker.port, names)
    report.events_produced = len(ledger.event_ids)
    report.events_delivered_unique = len(delivered & ledger.event_ids)
    report.events_lost = len(ledger.event_ids - delivered)
    redis_broker.stop()
    mqtt_broker.stop()
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
