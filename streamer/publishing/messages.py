"""Turning results into JSON-ready messages: one versioned schema for every sink.

The schema is written down as JSON Schema files in streamer/publishing/schemas/; each event and
state type names its own (`streamer.core.events`), and tests validate every payload against it.
Every event carries a unique `id` (given at its birth, so every sink publishes the same id) and the
frame's `capture_ts`, so consumers can de-duplicate re-sent events and order them.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.core.detections import Detections
from streamer.core.events import (
    PUBLISHED_TYPES,
    CameraStatusEvent,
    Event,
    IdentityEvent,
    LineState,
    ZoneState,
    new_id,
)
from streamer.core.frames import FrameResult

SCHEMA_VERSION = 2  # 2: camera states (streaming, stalled, degraded, backoff, failed)
MS_PER_S = 1000.0
BOX_DECIMALS = 1
SCORE_DECIMALS = 3

FRAME_TYPE = "frame"
STATS_TYPE = "stats"
AVAILABILITY_TYPE = "availability"  # plain text, not JSON: it has a schema but no `type` field
AVAILABLE_ONLINE = "online"
AVAILABLE_DEGRADED = "degraded"  # running, but frames are not processed (inference down)
AVAILABLE_OFFLINE = "offline"

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILES = {
    FRAME_TYPE: "frame.json",
    **{str(name): published.schema for published in PUBLISHED_TYPES for name in published.type_names},
    STATS_TYPE: "stats.json",
    AVAILABILITY_TYPE: "availability.json",
}

# Embeddings travel as base64 of little-endian floats: 512 float16 values are 1.4 kB of text
# instead of about 5 kB as a JSON list.
EMBEDDING_DTYPES: dict[str, np.dtype[Any]] = {
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
}


def load_schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of a message type ("frame", "new", "identity", "availability", ...)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / SCHEMA_FILES[message_type]).read_text("utf-8"))
    return schema


def _json_default(value: Any) -> Any:
    """numpy values that later stages attach to tracks (ids, scores, names) become plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=_json_default)


def tracks_payload(tracks: Detections) -> list[dict[str, Any]]:
    ids = tracks.tracker_id.tolist() if tracks.tracker_id is not None else [None] * len(tracks)
    extras = {k: v.tolist() for k, v in tracks.data.items() if v.ndim == 1}
    # 2-D per-row data are pixel positions (face landmarks: x0, y0, ..., x4, y4).
    extras.update(
        {k: np.round(v.astype(np.float64), BOX_DECIMALS).tolist()
         for k, v in tracks.data.items() if v.ndim == 2}
    )
    rows = []
    for i, (track_id, box, score) in enumerate(
        zip(ids, tracks.xyxy.tolist(), tracks.confidence.tolist())
    ):
        row: dict[str, Any] = {
            "track_id": track_id,
            "box": [round(v, BOX_DECIMALS) for v in box],
            "score": round(score, SCORE_DECIMALS),
        }
        for key, values in extras.items():
            if values[i] is not None:
                row[key] = values[i]
        rows.append(row)
    return rows


def frame_message(result: FrameResult) -> dict[str, Any]:
    """The frame's message; its id is the result's, so every sink publishes the same one."""
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "type": FRAME_TYPE,
        "id": result.id,
        "camera": result.camera,
        "frame_index": result.frame_index,
        "capture_ts": result.capture_ts,
        "width": result.width,
        "height": result.height,
        "latency_ms": round(result.latency_s * MS_PER_S, 2),
        "timings_ms": {k: round(v * MS_PER_S, 2) for k, v in result.timings.items()},
        "tracks": tracks_payload(result.tracks),
        "detected": result.detected,
    }
    if result.faces is not None:
        message["faces"] = tracks_payload(result.faces)
    return message


def encode_embedding(vector: Any, dtype: str = "float16") -> dict[str, Any]:
    """A 1-D vector as {"dtype", "dim", "data": base64 of little-endian values}."""
    values = np.asarray(vector).reshape(-1).astype(EMBEDDING_DTYPES[dtype], copy=False)
    return {
        "dtype": dtype,
        "dim": int(values.shape[0]),
        "data": base64.b64encode(values.tobytes()).decode("ascii"),
    }


def embedding_bytes(encoded: dict[str, Any]) -> bytes:
    return base64.b64decode(encoded["data"])


def decode_embedding(encoded: dict[str, Any]) -> np.ndarray:
    """The inverse of `encode_embedding`, for consumers (returns float32)."""
    values = np.frombuffer(embedding_bytes(encoded), dtype=EMBEDDING_DTYPES[encoded["dtype"]])
    if values.shape[0] != encoded["dim"]:
        raise ValueError(f"embedding has {values.shape[0]} values, expected dim {encoded['dim']}")
    return values.astype(np.float32)


def event_message(event: Event, embedding_dtype: str = "float16") -> dict[str, Any]:
    """An event's message, with its id (first) for de-duplication."""
    message = {"schema_version": SCHEMA_VERSION, "id": event.id, **event.payload()}
    if isinstance(event, IdentityEvent):
        message["embedding"] = encode_embedding(event.embedding, embedding_dtype)
    return message


def state_message(state: ZoneState | LineState) -> dict[str, Any]:
    """A zone's or line's retained state (MQTT retained topic)."""
    return {"schema_version": SCHEMA_VERSION, **state.payload()}


def camera_status_message(status: CameraStatusEvent) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **status.payload()}


@dataclass(frozen=True)
class AnalyticsLayout:
    """The zones and lines of every camera, so a sink can say "nobody there yet" when the service
    starts, instead of leaving a crashed run's retained occupancy in place."""

    zones: dict[str, list[str]] = field(default_factory=dict)  # camera -> zone names
    lines: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # camera -> line -> directions

    def initial_states(self, ts: float) -> list[ZoneState | LineState]:
        """Occupancy 0 for every zone and no crossings yet for every line."""
        states: list[ZoneState | LineState] = [
            ZoneState(camera, zone, 0, ts) for camera, zones in self.zones.items() for zone in zones
        ]
        states += [
            LineState(camera, line, dict.fromkeys(directions, 0), ts)
            for camera, lines in self.lines.items()
            for line, directions in lines.items()
        ]
        return states


def stats_message(
    *,
    started_ts: float,
    cameras: dict[str, dict[str, Any]],
    sink: dict[str, Any],
    ts: float | None = None,
) -> dict[str, Any]:
    now = time.time() if ts is None else ts
    return {
        "schema_version": SCHEMA_VERSION,
        "type": STATS_TYPE,
        "id": new_id(),
        "ts": now,
        "started_ts": started_ts,
        "uptime_s": round(max(0.0, now - started_ts), 1),
        "cameras": cameras,
        "sink": sink,
    }
