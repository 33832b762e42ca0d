"""The snapshot directory: pictures on disk and the events index (SQLite), with retention.

Layout: `{directory}/images/{id}.jpg` (the crop) and `{id}-frame.jpg` (the annotated frame), and
`{directory}/events.sqlite3` (tables `snapshots` and `events`). Only the writer thread writes
(`SnapshotArchive`); readers (`EventsIndex`, the API) open their own read-only connections, so a
slow disk never blocks the event loop. Retention: pictures older than `max_age_h` go, then the
oldest until the total is under `max_total_mb`; below `min_free_mb` of free disk nothing is written.

Nothing is deleted that cannot be accounted for: a damaged index is moved aside and a fresh one
rebuilt from the pictures present; pictures the index does not name are indexed, except those
older than its oldest picture (which retention would have deleted), and both are logged.
"""

from __future__ import annotations

import errno
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
from streamer.core.stats import PartHealth
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.trouble import REPORT_INTERVAL_S, PauseReport

log = logging.getLogger(__name__)

INDEX_FILE = "events.sqlite3"
IMAGES_DIR = "images"
PRIVATE_CONTENTS = "pictures of people and the events index"
SNAPSHOT_ID = re.compile(r"[0-9a-f]{32}")  # what new_id() makes; nothing else names a file
FRAME_SUFFIX = "-frame"
SUMMARY_FIELD = "summary"  # an indexed event's `summary()`: what happened, for people
MB = 1024 * 1024
DELETE_BATCH = 64
DAMAGED_SUFFIX = ".damaged-"  # a damaged index is renamed events.sqlite3.damaged-YYYYmmdd-HHMMSS
INDEX_SIDE_FILES = ("-wal", "-shm")
DISK_FULL = "disk full"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
RESUME_ROOM = 256 * 1024  # a pause ends with this much (or two pictures' worth) above the floor
NAMED_MAX = 5

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
    """The writer's side: `open()`, then `store`/`index`/`prune` from one thread only.

    Nothing here stops the service: a damaged index is moved aside and rebuilt; a full disk
    pauses pictures (see `PauseReport`); what cannot be stored is counted as dropped.
    """

    def __init__(
        self,
        settings: SnapshotsConfig,
        stats: SnapshotStats,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
        health: PartHealth | None = None,
        report_interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.directory = settings.directory
        self.stats = stats
        self.free_bytes = free_bytes  # a probe, replaceable where a real small disk is not at hand
        self.health = health if health is not None else PartHealth()
        self.pause = PauseReport(self.health, report_interval_s)
        self.total_bytes = 0
        self.below_floor = False  # free space under the floor: nothing is written, not even rows
        self._resume_room = RESUME_ROOM  # free space beyond the floor that ends a pause
        self._db: sqlite3.Connection | None = None

    @property
    def paused(self) -> bool:
        """Pictures are not written (disk full, or the floor reached); read by the stage."""
        return self.pause.paused

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_FILE

    def open(self) -> None:
        """Open (or rebuild) the index and account for every picture on disk. Pictures of people
        and their index are private: folders 0700, files 0600 (SQLite gives its WAL and
        shared-memory files the database file's mode).

        Raises OSError or sqlite3.Error when the folder or a fresh index cannot be made at all.
        """
        private_folder(self.directory, PRIVATE_CONTENTS)
        private_folder(self.directory / IMAGES_DIR, PRIVATE_CONTENTS)
        path = self.index_path
        fresh = not path.exists() or (path.is_file() and path.stat().st_size == 0)
        moved: Path | None = None
        try:
            _create_private(path)
            db = _connect(path)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc, path):
                raise
            moved = self._move_aside(path)
            _create_private(path)
            db = _connect(path)
            fresh = True
            damage = str(exc)
        self._db = db
        if fresh:  # nothing tells which pictures belong: every one present is kept and indexed
            adopted = self._adopt(self._pictures_on_disk())
            if moved is not None:
                log.warning(
                    "snapshots: events index %s was damaged (%s); moved to %s and rebuilt from the "
                    "%d pictures present (their events stay in the damaged file)",
                    path, damage, moved.name, adopted,
                )
            elif adopted:
                log.warning(
                    "snapshots: events index %s was missing or empty; rebuilt from the %d pictures "
                    "present", path, adopted,
                )
        else:
            self._account_for_orphans()
        self.total_bytes = int(self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM snapshots").fetchone()[0])
        self.stats.disk_bytes = self.total_bytes
        self.check_floor()

    def _move_aside(self, path: Path) -> Path:
        """Rename the damaged index (and its WAL files) out of the way, never deleting it."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{stamp}")
        serial = 1
        while target.exists():
            serial += 1
            target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{stamp}-{serial}")
        path.rename(target)
        for side in INDEX_SIDE_FILES:
            companion = path.with_name(path.name + side)
            if companion.exists():
                companion.rename(target.with_name(target.name + side))
        return target

    def _pictures_on_disk(self) -> dict[str, tuple[float, int]]:
        """Snapshot id -> (oldest mtime, total bytes) of the pictures in the images folder."""
        found: dict[str, tuple[float, int]] = {}
        for path in (self.directory / IMAGES_DIR).glob("*.jpg"):
            snapshot_id = path.stem.removesuffix(FRAME_SUFFIX)
            if not SNAPSHOT_ID.fullmatch(snapshot_id):
                continue  # not ours: never touched
            try:
                info = path.stat()
            except OSError:
                continue
            mtime, size = found.get(snapshot_id, (info.st_mtime, 0))
            found[snapshot_id] = (min(mtime, info.st_mtime), size + info.st_size)
        return found

    def _adopt(self, pictures: dict[str, tuple[float, int]]) -> int:
        """Index pictures the index does not name (camera unknown): retention then keeps them."""
        rows = [(sid, "", mtime, size) for sid, (mtime, size) in pictures.items()]
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?)", rows)
        self.stats.add("adopted", len(rows))
        return len(rows)

    def _account_for_orphans(self) -> None:
        """Pictures without a row, with an index known whole: those older than the index's
        oldest picture are deleted (retention would have), the others (written just before a
        crash) indexed. Both logged."""
        known = {row[0] for row in self.db.execute("SELECT id FROM snapshots")}
        orphans = {sid: info for sid, info in self._pictures_on_disk().items() if sid not in known}
        if not orphans:
            return
        oldest = self.db.execute("SELECT MIN(created_ts) FROM snapshots").fetchone()[0]
        stale = [sid for sid, (mtime, _size) in orphans.items() if oldest is not None and mtime < oldest]
        for snapshot_id in stale:
            for frame in (False, True):
                picture_path(self.directory, snapshot_id, frame).unlink(missing_ok=True)
            del orphans[snapshot_id]
        if stale:
            self.stats.add("deleted_orphans", len(stale))
            log.info(
                "snapshots: deleted %d pictures the index does not name, older than its oldest "
                "picture: %s", len(stale), ", ".join(sorted(stale)[:NAMED_MAX]) + _more(stale),
            )
        if orphans:
            self._adopt(orphans)
            log.info(
                "snapshots: indexed %d pictures the index did not name (written just before the "
                "service stopped)", len(orphans),
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "archive not opened"
        return self._db

    # -- disk space -----------------------------------------------------------------------------

    def check_floor(self, needed: int = 0) -> bool:
        """True when writing `needed` more bytes keeps free space at or above the floor.

        Also ends a pause once there is room again (the floor plus a few pictures' worth), and
        keeps `below_floor` for the index."""
        free = self.free_bytes(self.directory)
        floor = self.settings.min_free_mb * MB
        self.below_floor = free < floor
        if self.paused and free >= floor + self._resume_room:
            self.pause.resume(f"{free / MB:.1f} MB free")
        return free - needed >= floor

    def drop_picture(self) -> None:
        """A picture not written because pictures are paused (counted by cause)."""
        floor = self.pause.for_space and self.pause.reason != DISK_FULL
        self.stats.add("dropped_disk_floor" if floor else "dropped_disk_full")
        self.pause.dropped(pictures=1)

    def _pause_for_floor(self, needed: int) -> None:
        self._resume_room = max(RESUME_ROOM, 2 * needed)
        if not self.settings.min_free_mb:  # no floor: the disk itself is full
            self.pause.pause(DISK_FULL, for_space=True)
            return
        free = self.free_bytes(self.directory)
        self.pause.pause(
            f"{free / MB:.1f} MB free, the {self.settings.min_free_mb:g} MB floor reached",
            for_space=True,
        )

    def _pause_for_disk(self, problem: str, needed: int) -> None:
        self._resume_room = max(RESUME_ROOM, 2 * needed)
        self.pause.pause(problem, for_space=problem == DISK_FULL)

    # -- writing --------------------------------------------------------------------------------

    def store(self, picture: Picture) -> bool:
        """Write the pictures; False (counted) when they cannot be, for want of space or else."""
        if not self.check_floor(picture.size):
            self._pause_for_floor(picture.size)
            self.drop_picture()
            return False
        if self.paused and self.pause.for_space:
            self.drop_picture()
            return False
        crop = picture_path(self.directory, picture.snapshot_id)
        frame = picture_path(self.directory, picture.snapshot_id, frame=True)
        try:
            write_private(crop, picture.crop_jpeg)
            write_private(frame, picture.frame_jpeg)
        except OSError as exc:
            for path in (crop, frame):
                path.unlink(missing_ok=True)
            if exc.errno in DISK_FULL_ERRNOS:
                self._pause_for_disk(DISK_FULL, picture.size)
            else:
                self.stats.write_errors += 1
                self._pause_for_disk(f"pictures cannot be written: {exc.strerror or exc}", picture.size)
            self.drop_picture()
            return False
        try:
            self._write_rows(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?)",
                [(picture.snapshot_id, picture.camera, picture.created_ts, picture.size)],
            )
        except sqlite3.Error as exc:
            for path in (crop, frame):  # written but not indexed: nothing would account for them
                path.unlink(missing_ok=True)
            self._index_failed(exc, picture.size)
            self.drop_picture()
            return False
        self.total_bytes += picture.size
        self.stats.written += 1
        self.stats.disk_bytes = self.total_bytes
        if self.paused:  # paused for an error, and this try worked
            self.pause.resume("pictures can be written again")
        self.enforce_size()
        return True

    def index(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Add events (their payloads, with `id`) to the index; the same id twice is kept once."""
        if not payloads:
            return
        if self.below_floor:
            self.stats.add("index_dropped", len(payloads))
            self.pause.dropped(events=len(payloads))
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
        try:
            self._write_rows("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self.stats.add("index_dropped", len(rows))
            self._index_failed(exc, 0)
            self.pause.dropped(events=len(rows))
            return
        self.stats.indexed += len(rows)

    def _write_rows(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """One write; a damaged index is moved aside and rebuilt, then the write tried once more."""
        try:
            with self.db:
                self.db.executemany(statement, rows)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc, self.index_path):
                raise
            self.rebuild(exc)
            with self.db:
                self.db.executemany(statement, rows)

    def rebuild(self, damage: BaseException) -> None:
        """The index went bad under the running service: move it aside, start a fresh one from
        the pictures present (their events stay in the damaged file)."""
        self.close()
        moved = self._move_aside(self.index_path)
        _create_private(self.index_path)
        self._db = _connect(self.index_path)
        adopted = self._adopt(self._pictures_on_disk())
        self.total_bytes = int(self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM snapshots").fetchone()[0])
        self.stats.disk_bytes = self.total_bytes
        self.stats.add("index_rebuilt")
        log.error(
            "snapshots: events index %s is damaged (%s); moved to %s and rebuilt from the %d "
            "pictures present", self.index_path, damage, moved.name, adopted,
        )

    def disk_failed(self, exc: OSError | sqlite3.Error) -> None:
        """Retention or the free-space probe failed: told like any disk trouble (a pause)."""
        if isinstance(exc, sqlite3.Error):
            self._index_failed(exc, 0)
        elif exc.errno in DISK_FULL_ERRNOS:
            self._pause_for_disk(DISK_FULL, 0)
        else:
            self.stats.write_errors += 1
            self._pause_for_disk(f"the snapshot folder fails: {exc.strerror or exc}", 0)

    def _index_failed(self, exc: sqlite3.Error, needed: int) -> None:
        """A write the index refused: a full disk pauses pictures; anything else as well, with
        its reason (a line per interval, never a traceback per event)."""
        text = str(exc)
        if "full" in text.lower():
            self._pause_for_disk(DISK_FULL, needed)
        else:
            self.stats.write_errors += 1
            self._pause_for_disk(f"the events index refuses writes: {text}", needed)

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


def _create_private(path: Path) -> None:
    """The index file made 0600 before SQLite opens it (SQLite would follow the umask)."""
    if not path.is_dir():
        os.close(open_private(path, os.O_RDWR | os.O_CREAT, PRIVATE_CONTENTS))


def _connect(path: Path) -> sqlite3.Connection:
    """The index, opened and checked whole (sqlite3.DatabaseError when it is not)."""
    if path.is_dir():
        raise sqlite3.DatabaseError(f"{path.name} is a folder, not an index")
    db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {verdict}")
    except BaseException:
        db.close()
        raise
    return db


def _damaged(exc: sqlite3.DatabaseError, path: Path) -> bool:
    """Damage (not a database, malformed, a folder in its place), as opposed to a file that
    cannot be opened or written now (permissions, a full disk, a lock): only damage is moved."""
    return path.is_dir() or not isinstance(exc, sqlite3.OperationalError)


def _more(items: Sequence[str]) -> str:
    return f" and {len(items) - NAMED_MAX} more" if len(items) > NAMED_MAX else ""


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
