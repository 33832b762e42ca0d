"""The interface of a stage after tracking (faces, ReID, later zones): what it sees and may change.

A stage gets the frame, the result so far, and a `TrackBook`: a read-only view of the camera's
tracks with one explicit way to annotate them. It never reaches into a tracker's internals.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from streamer.core.frames import Frame, FrameResult


class TrackBook(Protocol):
    """One camera's live tracks, as later stages may see and annotate them."""

    def frames_seen(self, track_id: int) -> int:
        """Frames the track has been seen in (0 for a track that is not live)."""
        ...

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> Any | None:
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
