"""Event snapshots: a picture of each track end and zone/line event, kept on disk and indexed.

`SnapshotStage` (the stage), `SnapshotWriter` (the writer thread), `SnapshotArchive` (pictures,
the events index, retention) and `snapshot_routes` (GET /api/events, GET /api/snapshots/{id}.jpg).
"""

from streamer.snapshots.api import snapshot_routes
from streamer.snapshots.archive import EventQuery, EventsIndex, SnapshotArchive
from streamer.snapshots.stage import SnapshotStage
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.writer import SnapshotWriter

__all__ = [
    "EventQuery",
    "EventsIndex",
    "SnapshotArchive",
    "SnapshotStage",
    "SnapshotStats",
    "SnapshotWriter",
    "snapshot_routes",
]
