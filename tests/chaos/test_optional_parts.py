"""Optional parts never stop the service, and nothing is deleted that cannot be accounted for
(issue 25, findings 2 and 3).

A damaged events index (garbage header, truncated, random bytes, a folder in its place, two
damaged pages) is moved aside and a fresh one rebuilt from the pictures present; an emptied index
deletes no picture. A picture archive, a faces store or a sink that cannot open is one ERROR and a
`/readyz` reason, and the cameras run without it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from streamer.assembly import build_pipeline, build_sinks, build_stages
from streamer.config import SnapshotsConfig, StreamerConfig
from streamer.core.events import new_id
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.service import MetricsService
from streamer.snapshots.archive import (
    INDEX_FILE,
    EventQuery,
    EventsIndex,
    Picture,
    SnapshotArchive,
    picture_path,
)
from streamer.snapshots.stats import SnapshotStats
from tests.chaos.conftest import Arrivals

PICTURES = 12
PAGE = 4096


def some_jpeg(seed: int) -> bytes:
    return bytes([0xFF, 0xD8]) + np.random.default_rng(seed).bytes(3000) + bytes([0xFF, 0xD9])


def archive_in(directory: Path) -> SnapshotArchive:
    config = SnapshotsConfig.model_validate({"enabled": True, "directory": directory, "min_free_mb": 0})
    archive = SnapshotArchive(config, SnapshotStats())
    archive.open()
    return archive


def filled_archive(directory: Path) -> list[str]:
    """An archive of PICTURES pictures, each with an event of ~1 kB (several index pages)."""
    archive = archive_in(directory)
    now, ids = time.time(), []
    for index in range(PICTURES):
        sid = new_id()
        assert archive.store(Picture(sid, "door", now - 100 + index, some_jpeg(index), some_jpeg(index + 99)))
        archive.index([{"id": new_id(), "type": "end", "camera": "door", "track_id": index,
                        "capture_ts": now - 100 + index, "snapshot_id": sid, "pad": "x" * 1000}])
        ids.append(sid)
    archive.close()
    return ids


def damage(index: Path, how: str) -> None:
    data = index.read_bytes()
    if how == "garbage-header":
        index.write_bytes(b"this is not a database".ljust(100, b"!") + data[100:])
    elif how == "truncated":
        index.write_bytes(data[: len(data) // 3])
    elif how == "random-bytes":
        index.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif how == "folder":
        index.unlink()
        index.mkdir()
        (index / "something").write_text("a folder where the index should be")
    elif how == "two-damaged-pages":
        assert len(data) >= 4 * PAGE, "the index must span several pages"
        pages = bytearray(data)
        for page in (1, 3):  # the second and fourth page: b-tree pages, the header left intact
            pages[page * PAGE : (page + 1) * PAGE] = np.random.default_rng(page).bytes(PAGE)
        index.write_bytes(bytes(pages))


@pytest.mark.parametrize(
    "how", ["garbage-header", "truncated", "random-bytes", "folder", "two-damaged-pages"]
)
def test_a_damaged_index_is_moved_aside_and_rebuilt_from_every_picture_present(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    ids = filled_archive(tmp_path)
    index = tmp_path / INDEX_FILE
    damage(index, how)
    with caplog.at_level(logging.INFO, logger="streamer.snapshots"):
        archive = archive_in(tmp_path)  # used to raise: `streamer run` exited 1
    moved = list(tmp_path.glob(f"{INDEX_FILE}.damaged-*"))
    assert len([p for p in moved if not p.name.endswith(("-wal", "-shm"))]) == 1, moved
    assert all(picture_path(tmp_path, sid).exists() for sid in ids), "no picture deleted"
    indexed = {row[0] for row in archive.db.execute("SELECT id FROM snapshots")}
    assert indexed == set(ids), "every picture present is in the fresh index (retention keeps it)"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and f"{PICTURES} pictures" in warnings[0]
    archive.index([{"id": "after", "type": "end", "camera": "door", "capture_ts": time.time()}])
    archive.close()
    assert [e["id"] for e in EventsIndex(tmp_path).events(EventQuery())] == ["after"]


def test_an_emptied_index_deletes_no_picture(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids = filled_archive(tmp_path)
    (tmp_path / INDEX_FILE).write_bytes(b"")  # `: > events.sqlite3`
    for side in ("-wal", "-shm"):
        (tmp_path / f"{INDEX_FILE}{side}").unlink(missing_ok=True)
    with caplog.at_level(logging.INFO, logger="streamer.snapshots"):
        archive = archive_in(tmp_path)
    assert all(picture_path(tmp_path, sid).exists() for sid in ids), "used to delete all of them"
    assert archive.stats.adopted == PICTURES and archive.stats.deleted_orphans == 0
    assert any(f"rebuilt from the {PICTURES} pictures" in r.getMessage() for r in caplog.records)
    archive.close()


async def test_parts_that_cannot_open_leave_the_cameras_running_and_say_so(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    faces = tmp_path / "faces.npz"
    faces.write_bytes(b"PK\x03\x04 half of a zip file")
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "snapshots": {"enabled": True, "directory": str(blocker / "snapshots"), "min_free_mb": 0},
        "faces": {"enabled": True},
        "identities": {"faces_store": str(faces)},
        "publishing": {"jsonl": {"enabled": True, "path": str(tmp_path)}},  # a folder: cannot open
        "dashboard": {"port": 0},
        "cameras": [{"name": "door", "url": str(sample_clip), "loop": True}],
    })
    arrivals = Arrivals()
    pipeline = build_pipeline(
        config, sinks=build_sinks(config), stages=build_stages(config), observers=[arrivals]
    )
    metrics = MetricsService(config, pipeline.registry)
    await metrics.start()
    try:
        with caplog.at_level(logging.ERROR):
            await pipeline.start()  # used to raise, and `streamer run` exited 1
        await arrivals.wait_for("door", 5)
        async with aiohttp.ClientSession() as session, session.get(f"{metrics.url}/readyz") as answer:
            status, body = answer.status, await answer.json()
        state = metrics.server.state() if metrics.server is not None else {}
    finally:
        await pipeline.stop()
        await metrics.stop()
    parts = pipeline.registry.read("part")  # type: ignore[arg-type]
    assert {name: part.state for name, part in parts.items()} == {
        "snapshots": "unavailable", "identities": "unavailable", "sink jsonl": "unavailable",
    }
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3, errors
    assert status == 503
    reasons = " | ".join(body["reasons"])
    for expected in ("snapshots unavailable: snapshots.directory", "identities unavailable: faces store",
                     "sink jsonl unavailable: jsonl: cannot start"):
        assert expected in reasons, reasons
    assert {p["name"] for p in state["parts"] if p["state"] == "unavailable"} == set(parts)
    assert os.path.isfile(blocker), "nothing of the operator's was touched"
