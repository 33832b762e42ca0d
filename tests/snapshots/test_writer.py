"""The writer thread: a blocked writer never blocks the caller; what does not fit is dropped, counted."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamer.config import SnapshotsConfig
from streamer.core.events import new_id
from streamer.snapshots.archive import INDEX_FILE, EventQuery, EventsIndex, SnapshotArchive, picture_path
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.writer import PictureJob, SnapshotWriter

DEADLINE_S = 30.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def job() -> tuple[dict[str, object], PictureJob]:
    snapshot_id = new_id()
    frame = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    payload = {"id": new_id(), "type": "end", "camera": "door", "track_id": 3,
               "capture_ts": time.time(), "snapshot_id": snapshot_id}
    picture = PictureJob(snapshot_id, "door", time.time(), frame[10:60, 20:50].copy(), frame, 1.0,
                         np.array([[20.0, 10.0, 50.0, 60.0]]), np.array([3]), 3, "door #3")
    return payload, picture


def test_a_blocked_writer_drops_beyond_its_queue_and_catches_up_after(tmp_path: Path) -> None:
    settings = SnapshotsConfig.model_validate(
        {"enabled": True, "directory": tmp_path, "queue_size": 2, "min_free_mb": 0}
    )
    counters = SnapshotStats()
    writer = SnapshotWriter(SnapshotArchive(settings, counters), settings, counters)
    writer.start()
    # Another process-like holder locks the index: the writer's next insert waits on it.
    holder = sqlite3.connect(tmp_path / INDEX_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        first = job()
        assert writer.submit(*first)
        wait_for(lambda: picture_path(tmp_path, first[1].snapshot_id, frame=True).exists(),
                 "the writer to take the first picture and block on the index")
        second, third = job(), job()
        assert writer.submit(*second), "one more picture fits in the queue"
        assert not writer.submit(*third), "the queue is full: dropped at once, not waited for"
        assert counters.dropped_queue_full == 1
        assert counters.written == 0, "the writer is still blocked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: counters.indexed == 3, "the writer to catch up")
    writer.stop()
    assert counters.written == 2
    listed = {e["id"]: e["snapshot_id"] for e in EventsIndex(tmp_path).events(EventQuery())}
    assert listed == {first[0]["id"]: first[1].snapshot_id, second[0]["id"]: second[1].snapshot_id,
                      third[0]["id"]: None}, "the dropped picture's event is still listed"
    for snapshot_id in (first[1].snapshot_id, second[1].snapshot_id):
        assert picture_path(tmp_path, snapshot_id).read_bytes()[:2] == b"\xff\xd8"
