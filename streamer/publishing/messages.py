"""Turning results into JSON-ready messages (one schema for every sink)."""

from __future__ import annotations

import uuid
from typing import Any

from streamer.detections import Detections
from streamer.frames import FrameResult

SCHEMA_VERSION = 1
MS_PER_S = 1000.0
BOX_DECIMALS = 1
SCORE_DECIMALS = 3


def new_id() -> str:
    return uuid.uuid4().hex


def tracks_payload(tracks: Detections) -> list[dict[str, Any]]:
    ids = tracks.tracker_id.tolist() if tracks.tracker_id is not None else [None] * len(tracks)
    extras = {k: v.tolist() for k, v in tracks.data.items() if v.ndim == 1}
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
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "type": "frame",
        "id": new_id(),
        "camera": result.camera,
        "frame_index": result.frame_index,
        "capture_ts": result.capture_ts,
        "width": result.width,
        "height": result.height,
        "latency_ms": round(result.latency_s * MS_PER_S, 2),
        "timings_ms": {k: round(v * MS_PER_S, 2) for k, v in result.timings.items()},
        "tracks": tracks_payload(result.tracks),
    }
    if result.faces is not None:
        message["faces"] = tracks_payload(result.faces)
    return message


def event_message(event: dict[str, Any]) -> dict[str, Any]:
    """A track lifecycle or identity event, with its own id for de-duplication."""
    return {"schema_version": SCHEMA_VERSION, "id": new_id(), **event}
