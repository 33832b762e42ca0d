"""Event snapshots: a picture of each track end and zone/line event, kept on disk and indexed.

`SnapshotStage` (the stage), `SnapshotWriter` (the writer thread), `SnapshotArchive` (pictures,
the events index, retention) and `snapshot_routes` (GET /api/events, GET /api/snapshots/{id}.jpg).
"""

from streamer.recording.api import snapshot_routes
from streamer.recording.archive import EventQuery, EventsIndex, SnapshotArchive
from streamer.recording.counters import SnapshotCounters
from streamer.recording.stage import SnapshotStage
from streamer.recording.writer import SnapshotWriter

__all__ = [
    "EventQuery",
    "EventsIndex",
    "SnapshotArchive",
    "SnapshotCounters",
    "SnapshotStage",
    "SnapshotWriter",
    "snapshot_routes",
]
