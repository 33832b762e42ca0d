"""The snapshot directory: pictures on disk and the events index (SQLite), with retention.

Layout: `{directory}/images/{id}.jpg` (the crop) and `{id}-frame.jpg` (the annotated frame), and
`{directory}/events.sqlite3` (tables `snapshots` and `events`). Only the writer thread writes
(`SnapshotArchive`); readers (`EventsIndex`, the API) open their own read-only connections, so a
slow disk never blocks the event loop. Retention: pictures older than `max_age_h` go, then the
oldest until the total is under `max_total_mb`; below `min_free_mb` of free disk nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.config import SnapshotsConfig
from streamer.core.private import open_private, private_folder, write_private
from streamer.snapshots.stats import SnapshotStats

log = logging.getLogger(__name__)

INDEX_FILE = "events.sqlite3"
IMAGES_DIR = "images"
PRIVATE_CONTENTS = "pictures of people and the events index"
SNAPSHOT_ID = re.compile(r"[0-9a-f]{32}")  # what new_id() makes; nothing else names a file
FRAME_SUFFIX = "-frame"
SUMMARY_FIELD = "summary"  # an indexed event's `summary()`: what happened, for people
MB = 1024 * 1024
DELETE_BATCH = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, created_ts REAL NOT NULL, bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_age ON snapshots (created_ts);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, camera TEXT NOT NULL, zone TEXT, line TEXT,
    track_id INTEGER, capture_ts REAL NOT NULL, snapshot_id TEXT, payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (capture_ts);
CREATE INDEX IF NOT EXISTS events_by_snapshot ON events (snapshot_id);
"""


def disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def picture_path(directory: Path, snapshot_id: str, frame: bool = False) -> Path:
    """Where a picture lives; the id must be a snapshot id (checked: no path from outside)."""
    if not SNAPSHOT_ID.fullmatch(snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    return directory / IMAGES_DIR / f"{snapshot_id}{FRAME_SUFFIX if frame else ''}.jpg"


@dataclass(frozen=True, slots=True)
class Picture:
    """One event's encoded pictures, ready to store."""

    snapshot_id: str
    camera: str
    created_ts: float
    crop_jpeg: bytes
    frame_jpeg: bytes

    @property
    def size(self) -> int:
        return len(self.crop_jpeg) + len(self.frame_jpeg)


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class SnapshotArchive:
    """The writer's side: `open()`, then `store`/`index`/`prune` from one thread only."""

    def __init__(
        self,
        settings: SnapshotsConfig,
        stats: SnapshotStats,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
    ) -> None:
        self.settings = settings
        self.directory = settings.directory
        self.stats = stats
        self.free_bytes = free_bytes  # a probe, replaceable where a real small disk is not at hand
        self.total_bytes = 0
        self.below_floor = False  # read by the stage on the event loop (a bool: no lock needed)
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Pictures of people and the index of them are private: folders 0700, files 0600 (SQLite
        gives its WAL and shared-memory files the database file's mode)."""
        private_folder(self.directory, PRIVATE_CONTENTS)
        private_folder(self.directory / IMAGES_DIR, PRIVATE_CONTENTS)
        os.close(open_private(self.directory / INDEX_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_CONTENTS))
        db = sqlite3.connect(self.directory / INDEX_FILE, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        self._db = db
        self.total_bytes = int(db.execute("SELECT COALESCE(SUM(bytes), 0) FROM snapshots").fetchone()[0])
        self.stats.disk_bytes = self.total_bytes
        self._remove_orphans()
        self.check_floor()

    def _remove_orphans(self) -> None:
        """Pictures without a row (a crash between writing and indexing) would escape retention."""
        known = {row[0] for row in self.db.execute("SELECT id FROM snapshots")}
        for path in (self.directory / IMAGES_DIR).glob("*.jpg"):
            snapshot_id = path.stem.removesuffix(FRAME_SUFFIX)
            if snapshot_id not in known:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "archive not opened"
        return self._db

    def check_floor(self, needed: int = 0) -> bool:
        """True when writing `needed` more bytes keeps free space at or above the floor."""
        free = self.free_bytes(self.directory)
        floor = self.settings.min_free_mb * MB
        self.below_floor = free < floor
        return free - needed >= floor

    def store(self, picture: Picture) -> bool:
        """Write the pictures; False (counted) when it would take free space below the floor."""
        if not self.check_floor(picture.size):
            self.stats.add("dropped_disk_floor")
            return False
        crop = picture_path(self.directory, picture.snapshot_id)
        frame = picture_path(self.directory, picture.snapshot_id, frame=True)
        try:
            write_private(crop, picture.crop_jpeg)
            write_private(frame, picture.frame_jpeg)
        except OSError as exc:
            self.stats.write_errors += 1
            log.warning("snapshot %s not written: %s", picture.snapshot_id, exc)
            for path in (crop, frame):
                path.unlink(missing_ok=True)
            return False
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?)",
                (picture.snapshot_id, picture.camera, picture.created_ts, picture.size),
            )
        self.total_bytes += picture.size
        self.stats.written += 1
        self.stats.disk_bytes = self.total_bytes
        self.enforce_size()
        return True

    def index(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Add events (their payloads, with `id`) to the index; the same id twice is kept once."""
        if not payloads:
            return
        if self.below_floor:
            self.stats.add("index_dropped", len(payloads))
            return
        rows = [
            (
                payload["id"],
                payload["type"],
                payload["camera"],
                payload.get("zone"),
                payload.get("line"),
                payload.get("track_id"),
                float(payload["capture_ts"]),
                payload.get("snapshot_id"),
                json.dumps(payload, default=json_default, separators=(",", ":")),
            )
            for payload in payloads
        ]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.stats.indexed += len(rows)

    def prune(self, now: float | None = None) -> None:
        """Age retention for pictures and events, then the size limit, then the floor's state."""
        cutoff = (time.time() if now is None else now) - self.settings.max_age_h * 3600
        while True:
            old = self.db.execute(
                "SELECT id, bytes FROM snapshots WHERE created_ts < ? ORDER BY created_ts LIMIT ?",
                (cutoff, DELETE_BATCH),
            ).fetchall()
            if not old:
                break
            self._delete(old)
            self.stats.deleted_age += len(old)
        with self.db:
            self.db.execute("DELETE FROM events WHERE capture_ts < ?", (cutoff,))
            excess = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] - self.settings.max_events
            if excess > 0:
                self.db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY capture_ts LIMIT ?)",
                    (excess,),
                )
        self.enforce_size()
        self.check_floor()

    def enforce_size(self) -> None:
        """Delete the oldest pictures until the total is within `max_total_mb`."""
        limit = self.settings.max_total_mb * MB
        while self.total_bytes > limit:
            oldest = self.db.execute(
                "SELECT id, bytes FROM snapshots ORDER BY created_ts LIMIT ?", (DELETE_BATCH,)
            ).fetchall()
            if not oldest:
                break
            chosen: list[tuple[str, int]] = []
            excess = self.total_bytes - limit
            for snapshot_id, size in oldest:
                chosen.append((snapshot_id, size))
                excess -= size
                if excess <= 0:
                    break
            self._delete(chosen)
            self.stats.deleted_size += len(chosen)

    def _delete(self, rows: Iterable[tuple[str, int]]) -> None:
        """Files first, then rows; events keep their entry with no picture."""
        rows = list(rows)
        for snapshot_id, _size in rows:
            for frame in (False, True):
                picture_path(self.directory, snapshot_id, frame).unlink(missing_ok=True)
        ids = [(snapshot_id,) for snapshot_id, _size in rows]
        with self.db:
            self.db.executemany("DELETE FROM snapshots WHERE id = ?", ids)
            self.db.executemany("UPDATE events SET snapshot_id = NULL WHERE snapshot_id = ?", ids)
        self.total_bytes -= sum(size for _id, size in rows)
        self.stats.disk_bytes = self.total_bytes


@dataclass(frozen=True, slots=True)
class EventQuery:
    camera: str | None = None
    zone: str | None = None
    line: str | None = None
    types: tuple[str, ...] = ()
    since: float | None = None
    limit: int = 100


class EventsIndex:
    """The readers' side: queries on their own read-only connection (call off the event loop)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Newest first; each event's payload with its `id`, `summary` and `snapshot_id` (when
        kept)."""
        path = self.directory / INDEX_FILE
        if not path.exists():
            return []
        clauses: list[str] = []
        values: list[Any] = []
        for column, value in (("camera", query.camera), ("zone", query.zone), ("line", query.line)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if query.types:
            clauses.append(f"type IN ({', '.join('?' * len(query.types))})")
            values.extend(query.types)
        if query.since is not None:
            clauses.append("capture_ts >= ?")
            values.append(query.since)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = db.execute(
                f"SELECT payload, snapshot_id FROM events {where} ORDER BY capture_ts DESC LIMIT ?",
                (*values, query.limit),
            ).fetchall()
        finally:
            db.close()
        events = []
        for payload, snapshot_id in rows:
            event = json.loads(payload)
            event["snapshot_id"] = snapshot_id  # None once retention deleted the picture
            event.setdefault(SUMMARY_FIELD, event["type"])  # indexed before events had summaries
            events.append(event)
        return events

    def picture(self, snapshot_id: str, frame: bool = False) -> Path | None:
        try:
            path = picture_path(self.directory, snapshot_id, frame)
        except ValueError:
            return None
        return path if path.is_file() else None
