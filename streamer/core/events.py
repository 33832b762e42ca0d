"""Events, typed and frozen, with their id and frame index from birth.

Every sink publishes the same event with the same id (consumers de-duplicate re-sent events by
it), so the id is given when the event is made, never stamped later by whoever publishes first.

Each type owns everything about it, and its type names are written here only:
* `type_names` and `payload()`: what its messages say (sinks add `schema_version`);
* `schema`: the JSON Schema its payload follows (a file in streamer/publishing/schemas/);
* `summary()`: one line for people (the events index, the dashboard);
* `retained_state()`: the state it updates that sinks keep for whoever asks later (a zone's
  occupancy, a line's counts, a track's latest identity). Sinks route on these types and never
  parse their own JSON back.

A new event type is one class here, added to `Event` (or to `RetainedState` for a new kind of
retained state), with its schema file.
"""

from __future__ import annotations

import abc
import base64
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self, get_args

import numpy as np

EmbeddingKind = Literal["face", "reid"]


def new_id() -> str:
    return uuid.uuid4().hex


def spoken_duration(seconds: float) -> str:
    """'45s', '3m 4s', '1h 2m': as the dashboard writes durations."""
    whole = int(seconds)
    hours, minutes = divmod(whole // 60, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {whole % 60}s"
    return f"{whole}s"


class Published(abc.ABC):
    """A message type the sinks publish: its `type` values, its JSON Schema, its payload."""

    __slots__ = ()
    type_names: ClassVar[tuple[str, ...]]  # the values of `type` in its messages
    schema: ClassVar[str]  # its JSON Schema's file in streamer/publishing/schemas/

    @abc.abstractmethod
    def payload(self) -> dict[str, Any]:
        """Its message without `schema_version` (and, for pipeline events, without the `id` the
        sinks put first); numpy values are left for the sinks' JSON encoding."""


class Retained(Published):
    """A value sinks keep (an MQTT retained topic, a Redis hash) for whoever asks later.

    It travels with its event through the delivery buffer, spill file included; `record()` is its
    form there (JSON values), `from_record()` makes it again.
    """

    __slots__ = ()

    @abc.abstractmethod
    def record(self) -> dict[str, Any]:
        """Its fields as JSON values."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**record)


class BaseEvent(Published):
    """What every event type says besides its payload."""

    __slots__ = ()

    @abc.abstractmethod
    def summary(self) -> str:
        """What happened, in a few words, without the camera ('entered zone door')."""

    def retained_state(self) -> RetainedState | None:
        """The retained state this event updates (sent right after it); None: none."""
        return None


class TrackEventType(StrEnum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True, slots=True)
class TrackEvent(BaseEvent):
    """A track's lifecycle: `new` (before None), `update` (an attribute changed), `end` (after None)."""

    type_names: ClassVar[tuple[str, ...]] = tuple(TrackEventType)
    schema: ClassVar[str] = "track_event.json"
    type: TrackEventType
    camera: str
    track_id: int
    frame_index: int
    capture_ts: float
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    snapshot_id: str | None = None  # the event's picture (streamer.snapshots), when one is kept
    id: str = field(default_factory=new_id)

    @property
    def ended(self) -> bool:
        return self.type == TrackEventType.END

    def payload(self) -> dict[str, Any]:
        payload = {
            "type": str(self.type),
            "camera": self.camera,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
            "before": self.before,
            "after": self.after,
        }
        return with_snapshot(payload, self.snapshot_id)

    def summary(self) -> str:
        what = {
            TrackEventType.NEW: "new track #{}",
            TrackEventType.UPDATE: "track #{} updated",
            TrackEventType.END: "track #{} ended",
        }[self.type]
        return what.format(self.track_id)


class ZoneEventType(StrEnum):
    ENTER = "zone_enter"
    EXIT = "zone_exit"
    LOITERING = "loitering"


@dataclass(frozen=True, slots=True)
class ZoneEvent(BaseEvent):
    """A confirmed track entered or left a zone, or has stayed in it past the loitering threshold."""

    type_names: ClassVar[tuple[str, ...]] = tuple(ZoneEventType)
    schema: ClassVar[str] = "zone_event.json"
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
            "type": str(self.type),
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

    def summary(self) -> str:
        kind = self.type
        what = {
            ZoneEventType.ENTER: f"entered zone {self.zone}",
            ZoneEventType.EXIT: f"left zone {self.zone}",
            ZoneEventType.LOITERING: f"loitering in zone {self.zone}",
        }[kind]
        if self.dwell_s is None or kind == ZoneEventType.ENTER:
            return what
        return f"{what} {'after' if kind == ZoneEventType.EXIT else 'for'} {spoken_duration(self.dwell_s)}"

    def retained_state(self) -> ZoneState | None:
        if self.occupancy is None:
            return None
        return ZoneState(self.camera, self.zone, self.occupancy, self.capture_ts, self.id)


@dataclass(frozen=True, slots=True)
class LineCrossEvent(BaseEvent):
    """A confirmed track crossed a line; `direction` is one of the line's two direction names."""

    type: ClassVar[str] = "line_cross"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = "line_cross.json"
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

    def summary(self) -> str:
        return f"crossed line {self.line} going {self.direction}"

    def retained_state(self) -> LineState:
        return LineState(self.camera, self.line, self.counts, self.capture_ts, self.id, self.direction)


def with_snapshot(payload: dict[str, Any], snapshot_id: str | None) -> dict[str, Any]:
    if snapshot_id is not None:
        payload["snapshot_id"] = snapshot_id
    return payload


@dataclass(frozen=True, slots=True)
class IdentityEvent(BaseEvent, Retained):
    """A face or ReID embedding of a track, and the identity it matched (name, global id).

    It is also its own retained state: a store may keep each track's latest one (Redis does).
    """

    type: ClassVar[str] = "identity"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = "identity.json"
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

    def summary(self) -> str:
        parts = [f"{self.kind} embedding of track #{self.track_id}"]
        if self.name is not None:
            parts.append(f"matched {self.name}")
        if self.global_id is not None:
            parts.append(f"global id {self.global_id}")
        return ", ".join(parts)

    def retained_state(self) -> IdentityEvent:
        return self

    def record(self) -> dict[str, Any]:
        """Every field; the embedding exactly, as its dtype and the base64 of its bytes."""
        record: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            record[item.name] = value.item() if isinstance(value, np.generic) else value
        values = np.ascontiguousarray(self.embedding)
        record["embedding"] = [values.dtype.str, base64.b64encode(values.tobytes()).decode("ascii")]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        dtype, data = record["embedding"]
        embedding = np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype))
        return cls(**{**record, "embedding": embedding})


@dataclass(frozen=True, slots=True)
class CameraStatusEvent(BaseEvent):
    """A camera changed state (see `streamer.core.stats.CameraState`).

    Sinks keep each camera's latest status themselves (retained topic, state hash).
    """

    type: ClassVar[str] = "camera_status"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = "camera_status.json"
    camera: str
    status: str
    detail: str | None = None
    ts: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "camera": self.camera,
            "status": self.status,
            "detail": self.detail,
            "ts": self.ts,
        }

    def summary(self) -> str:
        return f"status: {self.status}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class ZoneState(Retained):
    """A zone's occupancy now, as its latest zone event (`event_id`) left it; None: at start."""

    type: ClassVar[str] = "zone_state"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = "zone_state.json"
    camera: str
    zone: str
    occupancy: int
    ts: float
    event_id: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "camera": self.camera,
            "zone": self.zone,
            "occupancy": self.occupancy,
            "ts": self.ts,
            "event_id": self.event_id,
        }

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LineState(Retained):
    """A line's crossings per direction since the camera started, as its latest crossing
    (`event_id`, going `crossed`) left them; `counts` None: the crossing did not say."""

    type: ClassVar[str] = "line_state"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = "line_state.json"
    camera: str
    line: str
    counts: dict[str, int] | None
    ts: float
    event_id: str | None = None
    crossed: str | None = None  # the direction this crossing added to; None: the value at start

    def payload(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "camera": self.camera,
            "line": self.line,
            "counts": self.counts,
            "ts": self.ts,
            "event_id": self.event_id,
        }

    def record(self) -> dict[str, Any]:
        return asdict(self)


Event = TrackEvent | IdentityEvent | ZoneEvent | LineCrossEvent
"""What stages add to a frame's result and the sinks publish."""

RetainedState = ZoneState | LineState | IdentityEvent
"""What an event's `retained_state()` may be."""

PUBLISHED_TYPES: tuple[type[Published], ...] = tuple(
    dict.fromkeys((*get_args(Event), CameraStatusEvent, *get_args(RetainedState)))
)
"""Every message type with its own schema, for the sinks and the schema tests."""
