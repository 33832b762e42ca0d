"""Events, typed and frozen, with their id and frame index from birth.

Every sink publishes the same event with the same id (consumers de-duplicate re-sent events by
it), so the id is given when the event is made, never stamped later by whoever publishes first.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

TrackEventType = Literal["new", "update", "end"]
ZoneEventType = Literal["zone_enter", "zone_exit", "loitering"]
EmbeddingKind = Literal["face", "reid"]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A track's lifecycle: `new` (before None), `update` (an attribute changed), `end` (after None)."""

    type: TrackEventType
    camera: str
    track_id: int
    frame_index: int
    capture_ts: float
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    snapshot_id: str | None = None  # the event's picture (streamer.snapshots), when one is kept
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        payload = {
            "type": self.type,
            "camera": self.camera,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
            "before": self.before,
            "after": self.after,
        }
        return with_snapshot(payload, self.snapshot_id)


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """A confirmed track entered or left a zone, or has stayed in it past the loitering threshold."""

    type: ZoneEventType
    camera: str
    zone: str
    track_id: int
    frame_index: int
    capture_ts: float
    dwell_s: float | None = None  # `zone_exit` and `loitering`: time in the zone so far
    occupancy: int | None = None  # confirmed tracks in the zone after this event
    snapshot_id: str | None = None
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": self.type,
            "camera": self.camera,
            "zone": self.zone,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
        }
        if self.dwell_s is not None:
            payload["dwell_s"] = self.dwell_s
        if self.occupancy is not None:
            payload["occupancy"] = self.occupancy
        return with_snapshot(payload, self.snapshot_id)


@dataclass(frozen=True, slots=True)
class LineCrossEvent:
    """A confirmed track crossed a line; `direction` is one of the line's two direction names."""

    type: ClassVar[str] = "line_cross"
    camera: str
    line: str
    direction: str
    track_id: int
    frame_index: int
    capture_ts: float
    # Crossings of this line per direction since the camera started, this one included.
    counts: dict[str, int] | None = None
    snapshot_id: str | None = None
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": self.type,
            "camera": self.camera,
            "line": self.line,
            "direction": self.direction,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
        }
        if self.counts is not None:
            payload["counts"] = dict(self.counts)
        return with_snapshot(payload, self.snapshot_id)


def with_snapshot(payload: dict[str, Any], snapshot_id: str | None) -> dict[str, Any]:
    if snapshot_id is not None:
        payload["snapshot_id"] = snapshot_id
    return payload


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    """A face or ReID embedding of a track, and the identity it matched (name, global id)."""

    type: ClassVar[str] = "identity"
    camera: str
    track_id: int
    frame_index: int
    capture_ts: float
    kind: EmbeddingKind
    embedding: np.ndarray
    quality: float
    samples: int
    global_id: int | None = None
    name: str | None = None  # the enrolled person a face matched
    similarity: float | None = None
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": self.type,
            "camera": self.camera,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
            "kind": self.kind,
            "embedding": self.embedding,
            "quality": self.quality,
            "samples": self.samples,
            "global_id": self.global_id,
        }
        if self.name is not None:
            payload["name"] = self.name
            payload["similarity"] = self.similarity
        return payload


@dataclass(frozen=True, slots=True)
class CameraStatusEvent:
    """A camera changed state (see `streamer.core.stats.CameraState`)."""

    type: ClassVar[str] = "camera_status"
    camera: str
    status: str
    detail: str | None = None
    ts: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)


Event = TrackEvent | IdentityEvent | ZoneEvent | LineCrossEvent
