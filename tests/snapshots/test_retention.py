"""Retention of the snapshot directory: age, total size (oldest first), and the free-space floor."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.config import SnapshotsConfig
from streamer.core.events import new_id
from streamer.snapshots.archive import (
    MB,
    EventQuery,
    EventsIndex,
    Picture,
    SnapshotArchive,
    picture_path,
)
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.writer import encode_jpeg

KB = 1024


def noise_jpeg(size: int, seed: int) -> bytes:
    """A real JPEG of noise (noise does not compress: the file is about as big as asked)."""
    side = int((size / 1.5) ** 0.5)
    image = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return encode_jpeg(image, 90)


def picture(created_ts: float, seed: int, size: int = 20 * KB) -> Picture:
    return Picture(new_id(), "door", created_ts, noise_jpeg(size, seed), noise_jpeg(size, seed + 1))


def archive_in(directory: Path, **settings: float) -> SnapshotArchive:
    config = SnapshotsConfig.model_validate({"enabled": True, "directory": directory, **settings})
    archive = SnapshotArchive(config, SnapshotStats())
    archive.open()
    return archive


def store_with_event(archive: SnapshotArchive, stored: Picture) -> None:
    assert archive.store(stored)
    archive.index([{"id": new_id(), "type": "end", "camera": "door", "track_id": 1,
                    "capture_ts": stored.created_ts, "snapshot_id": stored.snapshot_id}])


def on_disk(archive: SnapshotArchive, stored: Picture) -> bool:
    return picture_path(archive.directory, stored.snapshot_id).exists()


def test_the_size_limit_deletes_the_oldest_pictures_first(tmp_path: Path) -> None:
    now = time.time()
    pictures = [picture(now - 100 + i, seed=i) for i in range(8)]
    limit_mb = 3.5 * pictures[0].size / MB  # room for three and a half
    archive = archive_in(tmp_path, max_total_mb=limit_mb, min_free_mb=0)
    for stored in pictures:
        store_with_event(archive, stored)

    assert [on_disk(archive, p) for p in pictures] == [False] * 5 + [True] * 3
    assert archive.stats.deleted_size == 5
    assert archive.total_bytes <= limit_mb * MB
    listed = EventsIndex(tmp_path).events(EventQuery(camera="door"))
    assert [e["snapshot_id"] for e in listed] == [p.snapshot_id for p in reversed(pictures[5:])] + [
        None
    ] * 5, "events stay listed, newest first, without the deleted pictures"
    archive.close()

    reopened = archive_in(tmp_path, max_total_mb=limit_mb, min_free_mb=0)
    assert reopened.total_bytes == archive.total_bytes, "the total survives a restart"
    reopened.close()


def test_age_retention_deletes_old_pictures_and_events(tmp_path: Path) -> None:
    now = time.time()
    archive = archive_in(tmp_path, max_age_h=1, min_free_mb=0)
    old, recent = picture(now - 7200, seed=1), picture(now - 60, seed=2)
    for stored in (old, recent):
        store_with_event(archive, stored)
    archive.prune(now)
    assert not on_disk(archive, old) and on_disk(archive, recent)
    assert archive.stats.deleted_age == 1
    assert [e["snapshot_id"] for e in EventsIndex(tmp_path).events(EventQuery())] == [
        recent.snapshot_id
    ]
    archive.close()


@contextlib.contextmanager
def tiny_filesystem(path: Path, size_kb: int) -> Iterator[Path]:
    """A real tmpfs of `size_kb`; skips where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_writing_stops_at_the_free_space_floor_on_a_real_small_disk(tmp_path: Path) -> None:
    floor_mb = 1.0
    with tiny_filesystem(tmp_path / "disk", 2048) as disk:
        archive = archive_in(disk, min_free_mb=floor_mb, max_total_mb=100)
        now = time.time()
        results = [archive.store(picture(now + i, seed=i, size=40 * KB)) for i in range(40)]
        free = shutil.disk_usage(disk).free
        archive.close()
    assert results[0] and not results[-1], "written at first, refused once the floor is reached"
    assert archive.stats.dropped_disk_floor == results.count(False) > 0
    assert archive.below_floor
    assert free >= floor_mb * MB - 64 * KB, "the disk never fills past the floor (index pages aside)"


def test_the_floor_decision_follows_the_free_space_probe(tmp_path: Path) -> None:
    """Where no small disk can be mounted: the same decision, with the probe set by the test."""
    config = SnapshotsConfig.model_validate({"enabled": True, "directory": tmp_path, "min_free_mb": 10})
    free = {"bytes": 100 * MB}
    archive = SnapshotArchive(config, SnapshotStats(), free_bytes=lambda _path: free["bytes"])
    archive.open()
    assert archive.store(picture(time.time(), seed=1)) and not archive.below_floor
    free["bytes"] = 10 * MB + 1000
    assert not archive.store(picture(time.time(), seed=2))
    archive.prune()
    assert not archive.below_floor, "just above the floor: small index writes go on"
    free["bytes"] = 5 * MB
    archive.prune()
    assert archive.below_floor
    archive.index([{"id": new_id(), "type": "end", "camera": "door", "capture_ts": time.time()}])
    assert archive.stats.index_dropped == 1
    archive.close()


def test_the_index_is_capped_and_orphan_pictures_are_accounted_for_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole index: a picture it does not name that is newer than its oldest one (written just
    before a crash) is indexed and kept; one older than that is what retention deleted: gone."""
    now = time.time()
    archive = archive_in(tmp_path, max_events=3, min_free_mb=0)
    kept = [picture(now - 10 + i, seed=i) for i in range(5)]
    for stored in kept:
        store_with_event(archive, stored)
    archive.prune(now)
    assert len(EventsIndex(tmp_path).events(EventQuery())) == 3
    archive.close()
    crashed = picture_path(tmp_path, new_id())  # written, then the process died before indexing
    crashed.write_bytes(noise_jpeg(1000, seed=9))
    stale = picture_path(tmp_path, new_id())
    stale.write_bytes(noise_jpeg(1000, seed=10))
    os.utime(stale, (now - 3600, now - 3600))  # older than anything the index names
    with caplog.at_level(logging.INFO, logger="streamer.snapshots.archive"):
        reopened = archive_in(tmp_path, min_free_mb=0)
    assert crashed.exists() and not stale.exists() and all(on_disk(reopened, p) for p in kept)
    assert (reopened.stats.adopted, reopened.stats.deleted_orphans) == (1, 1)
    assert reopened.total_bytes == sum(p.size for p in kept) + crashed.stat().st_size
    messages = [r.getMessage() for r in caplog.records]
    assert any("deleted 1 pictures" in m and stale.stem in m for m in messages), messages
    assert any("indexed 1 pictures the index did not name" in m for m in messages), messages
    reopened.close()


def test_the_index_filters_by_time_type_and_limit(tmp_path: Path) -> None:
    archive = archive_in(tmp_path, min_free_mb=0)
    for second, kind in enumerate(["end", "zone_enter", "line_cross", "end", "zone_exit"]):
        archive.index([{"id": f"e{second}", "type": kind, "camera": "door", "capture_ts": 1000.0 + second}])
    archive.close()
    index = EventsIndex(tmp_path)
    assert [e["id"] for e in index.events(EventQuery(since=1002.0))] == ["e4", "e3", "e2"]
    assert [e["id"] for e in index.events(EventQuery(types=("end", "zone_exit"), limit=2))] == ["e4", "e3"]
