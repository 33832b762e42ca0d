"""The stats registry: every component registers one small stats object; readers read only this.

Metrics, the dashboard, `streamer stats` and `streamer bench` iterate the registry by kind; none of
them reaches into the pipeline's attributes. Stats objects are plain counters written by their
owner (a camera thread, a model's workers, a sink) and read at sample time; an entry may also be a
zero-argument callable returning a snapshot (a sink computing its buffer size on demand).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CameraState(StrEnum):
    """One camera's state, the same on every surface (dashboard, stats, MQTT/Redis, Prometheus).

    The source reports connecting, streaming, backoff, failed, finished and stopped; the pipeline's
    watchdog turns `streaming` into `stalled` (no frame decoded for `stall_after_s`) or `degraded`
    (frames arrive but are not processed: inference down or failing).
    """

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    DEGRADED = "degraded"
    BACKOFF = "backoff"
    FAILED = "failed"
    FINISHED = "finished"
    STOPPED = "stopped"


@dataclass
class CameraStats:
    """One camera: the source writes the decoding side, the camera loop the processing side."""

    name: str
    source: str  # the URL with credentials redacted
    state: CameraState = CameraState.CONNECTING
    source_state: CameraState = CameraState.CONNECTING  # what the source itself reports
    source_state_since: float = field(default_factory=time.monotonic)
    detail: str | None = None
    # decoding (the camera's thread)
    thread_id: int | None = None  # the decoding thread's native id (its CPU time in /proc)
    decoded: int = 0
    skipped: int = 0  # left out by the camera's max_fps cap
    dropped: int = 0  # replaced in the handoff slot before the pipeline took them
    reconnects: int = 0
    errors: int = 0
    decode_fps: float = 0.0
    source_fps: float | None = None  # the stream's own nominal rate
    last_error: str | None = None
    last_decoded_monotonic: float | None = None
    last_handed_monotonic: float | None = None  # a frame last handed to the pipeline
    # motion gating (the camera's thread measures motion; the camera loop counts gated frames)
    motion_gated: bool = False  # whether this camera skips detection on frames without motion
    motion_frames: int = 0  # frames in which motion was found
    motion_area: float = 0.0  # the latest frame's moving share of the picture (0-1)
    gated: int = 0  # frames published without detection: no motion, tracks carried over
    # processing (the camera loop)
    processed: int = 0  # frames published: detected, or carried over by motion gating
    inference_errors: int = 0
    processing_restarts: int = 0
    last_latency_s: float = 0.0
    last_result_monotonic: float | None = None
    # CPU seconds of the thread that did the work, per stage: decode and preprocess (the camera's
    # thread), postprocess, track, the extra stages and publish (the event loop's thread).
    cpu_s: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelStats:
    """One served model, as its client sees it."""

    name: str
    requests_in_flight: int
    max_batch_size: int | None = None
    shared_memory: bool = False
    requests: int = 0
    items: int = 0  # frames or crops those requests carried (a request may carry several)
    failures: int = 0
    request_seconds: float = 0.0
    # Health from its own requests: `failures_in_row` failed (timeouts included) with no success
    # between mark it down whatever the server's health endpoint says; the next success, or a
    # restart of the server, brings it back.
    up: bool = True
    failures_in_row: int = 0
    down_since_monotonic: float | None = None
    last_error: str | None = None


StatisticsFetcher = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class ServerStats:
    """The inference server: reachable or not, restarts, and how to read its statistics API."""

    url: str
    mode: str  # embedded / external
    up: bool = False
    restarts: int = 0
    down_since_monotonic: float | None = None
    last_error: str | None = None
    fetch_statistics: StatisticsFetcher | None = None  # model name -> Triton's statistics JSON


class StatsKind(StrEnum):
    """What a registered stats object describes; each kind has its own type."""

    CAMERA = "camera"  # CameraStats
    MODEL = "model"  # ModelStats
    SERVER = "server"  # ServerStats
    STAGE = "stage"  # a stage's dataclass of counts (exported as streamer_stage_*{stage})
    SINK = "sink"  # a zero-argument callable returning SinkStats
    ANALYTICS = "analytics"  # AnalyticsStats (zones and lines)
    IDENTITY_STORE = "identity_store"  # IdentityStoreStats (a gallery shared through a store)
    PART = "part"  # PartHealth: an optional part (event pictures, a store, a sink)


class PartState(StrEnum):
    """An optional part of the service: it works, works with a problem, or is not there at all."""

    OK = "ok"
    DEGRADED = "degraded"  # running, but losing work (e.g. pictures paused on a full disk)
    UNAVAILABLE = "unavailable"  # could not open: the cameras run without it


@dataclass
class PartHealth:
    """What an operator must hear about an optional part; `/readyz`, the dashboard and Prometheus
    read it. Parts never stop the cameras: they report here instead."""

    state: PartState = PartState.OK
    problem: str | None = None  # one line while the state is not ok

    def set(self, state: PartState, problem: str | None = None) -> None:
        self.state, self.problem = state, (None if state == PartState.OK else problem)


@dataclass
class SinkStats:
    """What an operator wants to know about a sink (metrics and dashboard read this)."""

    connected: bool = True
    published: int = 0
    buffered: int = 0
    dropped: int = 0
    errors: int = 0


@dataclass
class StatsRegistry:
    """Stats objects by kind and name."""

    _entries: dict[StatsKind, dict[str, Any]] = field(default_factory=dict)

    def register(self, kind: StatsKind, name: str, stats: Any) -> None:
        self._entries.setdefault(kind, {})[name] = stats

    def unregister(self, kind: StatsKind, name: str) -> None:
        self._entries.get(kind, {}).pop(name, None)

    def read(self, kind: StatsKind) -> dict[str, Any]:
        """Name -> stats (callables are called for their snapshot), in registration order."""
        return {
            name: stats() if callable(stats) else stats
            for name, stats in list(self._entries.get(kind, {}).items())
        }

    def cameras(self) -> dict[str, CameraStats]:
        return self.read(StatsKind.CAMERA)

    def models(self) -> dict[str, ModelStats]:
        return self.read(StatsKind.MODEL)

    def server(self) -> ServerStats | None:
        return next(iter(self.read(StatsKind.SERVER).values()), None)

    def parts(self) -> dict[str, PartHealth]:
        return self.read(StatsKind.PART)


def inference_problems(server: ServerStats | None, models: dict[str, ModelStats]) -> list[str]:
    """Why frames cannot be processed now (the server down, or a model failing every request);
    empty while inference works. One reading for readiness, availability and the dashboard."""
    if server is not None and not server.up:
        return [f"inference server down: {server.last_error or 'no error reported'}"]
    return [
        f"model {name} down: {model.last_error or 'requests fail'}"
        for name, model in models.items()
        if not model.up
    ]


@dataclass
class AnalyticsStats:
    """Zones and lines of every camera: occupancy now, events and crossings counted since start.

    Keys are (camera, zone), (camera, zone, event type) and (camera, line, direction); the stage
    fills every configured key with 0 at start, so a quiet zone shows 0 rather than nothing.
    """

    occupancy: dict[tuple[str, str], int] = field(default_factory=dict)
    zone_events: dict[tuple[str, str, str], int] = field(default_factory=dict)
    line_crossings: dict[tuple[str, str, str], int] = field(default_factory=dict)


@dataclass
class IdentityStoreStats:
    """The store a gallery shares with the other instances (`identities.gallery.backend: redis`).

    While it is down, matching goes on in this instance alone (its new global ids are provisional:
    they may later merge with another instance's) and changes wait in a bounded queue.
    """

    backend: str
    endpoint: str  # host:port/db, never with credentials
    instance: str  # this instance's name in the store
    connected: bool = False
    down_since_monotonic: float | None = None  # None while connected (or before the first try)
    last_error: str | None = None
    outages: int = 0  # times the store was lost (or unreachable at start)
    sent: int = 0  # changes written to the store
    applied: int = 0  # other instances' changes applied to this replica
    queued: int = 0  # changes waiting for the store
    dropped: int = 0  # changes dropped from a full queue (a snapshot is re-published instead)
    merges: int = 0  # two global ids found to be one person by this instance
    snapshots: int = 0  # times the replica was re-published (the store lost its log, or drops)
