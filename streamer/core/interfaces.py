"""The interfaces the pipeline is built from, one verb each: a frame source, a detector, a stage.

A stage after tracking (faces, ReID, later zones) gets the frame, the result so far, and a
`TrackBook`: a read-only view of the camera's tracks with one explicit way to annotate them. It
never reaches into a tracker's internals.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from streamer.core.detections import Detections
from streamer.core.events import Event, TrackEvent
from streamer.core.frames import Frame, FrameResult


class TrackBook(Protocol):
    """One camera's live tracks, as later stages may see and annotate them."""

    def frames_seen(self, track_id: int) -> int:
        """Frames the track has been seen in (0 for a track that is not live)."""
        ...

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> TrackEvent | None:
        """Attach attributes to a live track; returns the `update` event when something changed."""
        ...


@runtime_checkable
class FrameStage(Protocol):
    """Adds to a frame's result after tracking; `models` names what it needs served."""

    name: str
    models: list[str]

    async def start(self, models: dict[str, Any]) -> None:
        """Take the served models (by name) before the first frame; may refuse them."""
        ...

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None: ...

    def forget_camera(self, camera: str) -> None: ...


@runtime_checkable
class FinishingStage(Protocol):
    """A stage that also sees the `end` events of a stopping camera (no frame), and must stop.

    `finish_events` may return them changed (a snapshot id); `stop` runs after every camera ended.
    """

    def finish_events(self, camera: str, events: list[Event]) -> list[Event]: ...

    async def stop(self) -> None: ...


class FrameSource(Protocol):
    """One camera's frames: `start()` in the event loop, `await next_frame()` until None, `stop()`."""

    name: str

    def start(self) -> None: ...

    async def next_frame(self) -> Frame | None:
        """The newest frame, or None once the source has ended for good."""
        ...

    async def stop(self) -> None: ...


class Detector(Protocol):
    """Finds objects in a frame; `prepare` runs in the camera's thread, off the event loop."""

    def prepare(self, frame: Frame) -> None: ...

    async def detect(self, frame: Frame) -> Detections: ...
