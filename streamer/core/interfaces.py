"""The contracts the pipeline is built from: a frame source, a detector, a stage and a sink.

Each states everything the pipeline relies on, so that a new one is one class and one
registration (`streamer/assembly.py`), and the pipeline never reads a component with `getattr`:

* what it needs from the camera's thread (`FrameStage.needs_image`, `Detector.prepare`),
* what it wants to know of each camera (`configure_camera`, `set_camera_weight`),
* which stats it reports (`registered_stats`: kind -> stats object, read by metrics),
* how it starts and stops.

The camera settings type is a parameter (`CameraT`): `core` knows no configuration, the pipeline
uses these with `streamer.config.CameraConfig`.

A stage after tracking (faces, ReID, zones, event pictures) gets the frame, the result so far, and
a `TrackBook`: a read-only view of the camera's tracks with one explicit way to annotate them. It
never reaches into a tracker's internals.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from streamer.core.detections import Detections
from streamer.core.events import CameraStatusEvent, Event, TrackEvent
from streamer.core.frames import Frame, FrameResult
from streamer.core.stats import CameraState, CameraStats, SinkStats, StatsKind

CameraT = TypeVar("CameraT")
CameraT_contra = TypeVar("CameraT_contra", contravariant=True)


class TrackBook(Protocol):
    """One camera's live tracks, as later stages may see and annotate them."""

    def frames_seen(self, track_id: int) -> int:
        """Frames the track has been seen in (0 for a track that is not live)."""
        ...

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> TrackEvent | None:
        """Attach attributes to a live track; returns the `update` event when something changed."""
        ...


class FrameStage(abc.ABC, Generic[CameraT]):
    """Adds to a frame's result after tracking, in the order the stages were built.

    Every stage says `name` and `needs_image` (no default: a stage that reads only boxes must not
    make every camera's thread convert every frame to a full-size picture by forgetting to say so).
    Everything else has a default that does nothing.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The stage's name in logs, metrics (`streamer_stage_*{stage}`) and errors."""

    @property
    @abc.abstractmethod
    def needs_image(self) -> bool:
        """Whether `process` reads `frame.image` (the full-size BGR picture): the camera's thread
        then makes it for every frame, off the event loop."""

    models: Sequence[str] = ()
    """Models this stage needs served, by repository name; handed to `start`."""

    def registered_stats(self) -> Mapping[StatsKind, object]:
        """Stats objects to register under this stage's name, by kind (read at sample time)."""
        return {}

    def configure_camera(self, camera: CameraT) -> None:
        """A camera starts (at start, or added or changed at runtime) with these settings."""

    async def start(self, models: Mapping[str, Any]) -> None:
        """Take the served models (by name) before the first frame; may refuse them (raise)."""

    @abc.abstractmethod
    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        """Add to `result` (track data, `result.events`); runs on the event loop."""

    def finish_events(self, camera: str, events: list[Event]) -> list[Event]:
        """A stopping camera's `end` events (no frame): return them, changed or with more."""
        return events

    def forget_camera(self, camera: str) -> None:
        """The camera stopped; drop what is kept for it."""

    async def stop(self) -> None:
        """After every camera ended: stop what the stage runs in the background."""


StatusCallback = Callable[[str, CameraState, str | None], None]


@dataclass(frozen=True)
class SourceHooks:
    """What the pipeline gives a source: work for the camera's thread and where to report."""

    stats: CameraStats
    prepare: Callable[[Frame], None] | None = None  # the detector's input, made in the thread
    convert_in_thread: bool = True  # make the full-size picture in the thread (a stage reads it)
    on_status: StatusCallback | None = None


class FrameSource(abc.ABC, Generic[CameraT]):
    """One camera's frames: `start()` in the event loop, `await next_frame()` until None, `stop()`.

    A source type is registered by the URL schemes it reads; `build` makes one per camera and
    `probe` is what `streamer check` runs. A source writes the decoding side of its `CameraStats`
    (state, decoded, dropped, reconnects, errors) and calls `on_status` when its state changes;
    it runs `prepare` on every frame it hands over, off the event loop.
    """

    name: str
    stats: CameraStats

    @classmethod
    @abc.abstractmethod
    def build(cls, camera: CameraT, hooks: SourceHooks) -> FrameSource[CameraT]:
        """The source of one camera."""

    @classmethod
    @abc.abstractmethod
    def probe(cls, camera: CameraT) -> str:
        """Open the camera and read one frame, blocking (`streamer check` runs it in a thread);
        returns a short description ("1280x720 h264 25.0 fps"), raises what went wrong."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    async def next_frame(self) -> Frame | None:
        """The newest frame, or None once the source has ended for good."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop within a bounded time (a blocked read must not hold shutdown hostage)."""


SourceFactory = Callable[[CameraT, SourceHooks], FrameSource[CameraT]]


class Detector(abc.ABC):
    """Finds objects in a frame; `prepare` runs in the camera's thread, off the event loop."""

    @abc.abstractmethod
    def prepare(self, frame: Frame) -> None:
        """Make the model's input from the frame (letterbox) into `frame.prepared`."""

    @abc.abstractmethod
    async def detect(self, frame: Frame) -> Detections:
        """Boxes in frame pixels, scores and class ids."""

    def set_camera_weight(self, camera: str, weight: float) -> None:
        """The camera's share of the detector when cameras ask for more than it gives."""


DetectorFactory = Callable[[Mapping[str, Any]], Detector]
"""Builds the detector from the served models (by name), once they are up."""


class ProbeFailed(Exception):
    """`Sink.probe` could not reach or use what the sink publishes to; the message says why."""


class Sink(abc.ABC):
    """Receives results from the pipeline. `publish*` must return at once: buffer or drop, never wait.

    Events arrive typed (`streamer.core.events`); a sink routes on their types.
    """

    name: str = "sink"
    endpoint: str = ""  # where it publishes (host:port, a file), never with credentials

    async def probe(self) -> str | None:
        """`streamer check`: connect once and say what was found, or raise `ProbeFailed`;
        None for a sink with nothing to probe."""
        return None

    def stats(self) -> SinkStats:
        return SinkStats()

    async def start(self) -> None:
        """Connect; a broker that is down is retried in the background, not raised."""

    def publish(self, result: FrameResult) -> None:
        """One processed frame and the track and identity events it produced: one call per result."""
        self.publish_frame(result)
        if result.events:
            self.publish_events(result.events)

    @abc.abstractmethod
    def publish_frame(self, result: FrameResult) -> None:
        """The frame's message (tracks, boxes, timings)."""

    def publish_events(self, events: Sequence[Event]) -> None:
        """Track lifecycle (new/update/end), zone, line and identity events; these must not be lost."""

    def publish_status(self, status: CameraStatusEvent) -> None:
        """A camera changed state (connecting, streaming, stalled, degraded, backoff, ...)."""

    def publish_availability(self, availability: str) -> None:
        """The service is `online`, or `degraded` (running, but frames are not processed)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Flush what can be flushed in a bounded time and say what could not."""
