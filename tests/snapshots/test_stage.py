"""The snapshot stage on scripted frames through a real tracker: zone and line events get the
current frame, ended tracks their best view, also when the camera stops (no frame)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.config import StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import Event, LineCrossEvent, TrackEvent, ZoneEvent, ZoneEventType
from streamer.core.frames import Frame, FrameResult
from streamer.core.stats import PartState
from streamer.snapshots.archive import EventQuery, EventsIndex, picture_path
from streamer.snapshots.stage import SnapshotStage
from streamer.tracking.camera_tracker import CameraTracker

WIDTH, HEIGHT = 640, 480


def config_for(directory: Path, **snapshots: object) -> StreamerConfig:
    return StreamerConfig.model_validate({
        "snapshots": {"enabled": True, "directory": str(directory), "min_free_mb": 0, **snapshots},
        "cameras": [{"name": "door", "url": "rtsp://127.0.0.1:8554/door"}],
    })


def textured_frame(index: int) -> Frame:
    image = np.random.default_rng(index).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Frame("door", index, time.time(), time.monotonic(), image)


def person_at(x: float) -> Detections:
    return Detections(
        xyxy=np.array([[x, 100.0, x + 80.0, 340.0]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.zeros(1, np.int64),
    )


async def run_frames(stage: SnapshotStage, tracker: CameraTracker, count: int,
                     extra: dict[int, list[Event]]) -> list[Event]:
    """`count` frames of one person walking right; `extra` events join the frames they name."""
    seen: list[Event] = []
    for index in range(count):
        frame = textured_frame(index)
        tracks, events = tracker.update(frame, person_at(50.0 + 20 * index))
        result = FrameResult("door", index, frame.capture_ts, WIDTH, HEIGHT, tracks, 0.0, {},
                             events=[*events, *extra.get(index, [])])
        await stage.process(frame, result, tracker)
        seen.extend(result.events)
    return seen


async def test_zone_line_and_end_events_get_pictures(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    stage = SnapshotStage(config)
    await stage.start({})
    tracker = CameraTracker("door", config.tracker, 10.0)
    now = time.time()
    zone = ZoneEvent(ZoneEventType.ENTER, "door", "bay", 1, 5, now)
    line = LineCrossEvent("door", "entrance", "in", 1, 6, now)
    seen = await run_frames(stage, tracker, 10, {5: [zone], 6: [line]})
    ended = stage.finish_events("door", [*tracker.finish(9, time.time())])  # the camera stops
    stage.forget_camera("door")
    await stage.stop()

    pictured = {e.id: e for e in [*seen, *ended] if getattr(e, "snapshot_id", None)}
    assert {zone.id, line.id} <= set(pictured), "same event ids, now with pictures"
    end = next(e for e in ended if isinstance(e, TrackEvent) and e.ended)
    assert end.snapshot_id is not None, "the stopping camera's `end` event has its picture"
    for event in pictured.values():
        snapshot_id = getattr(event, "snapshot_id", None)
        assert isinstance(snapshot_id, str)
        frame = cv2.imread(str(picture_path(tmp_path, snapshot_id, frame=True)))
        crop = cv2.imread(str(picture_path(tmp_path, snapshot_id)))
        assert frame.shape == (HEIGHT, WIDTH, 3) and 240 <= crop.shape[0] < HEIGHT
    index = EventsIndex(tmp_path)
    assert [e["id"] for e in index.events(EventQuery(zone="bay"))] == [zone.id]
    assert [e["direction"] for e in index.events(EventQuery(line="entrance"))] == ["in"]
    assert [e["snapshot_id"] for e in index.events(EventQuery(types=("end",)))] == [end.snapshot_id]
    # what the events page shows, made by each event's type
    assert [e["summary"] for e in index.events(EventQuery())] == [
        f"track #{end.track_id} ended", "crossed line entrance going in", "entered zone bay"
    ]
    assert stage.stats.held_bytes == 0, "nothing held once the tracks ended"


async def test_short_tracks_get_no_picture_and_memory_is_bounded(tmp_path: Path) -> None:
    config = config_for(tmp_path, min_track_frames=5, max_held_mb=0.01)  # 10 kB: not one view
    stage = SnapshotStage(config)
    await stage.start({})
    tracker = CameraTracker("door", config.tracker, 10.0)
    await run_frames(stage, tracker, 3, {})
    ended = stage.finish_events("door", [*tracker.finish(2, time.time())])
    await stage.stop()
    assert [e.snapshot_id for e in ended if isinstance(e, TrackEvent)] == [None]
    assert stage.stats.dropped_memory >= 1 and stage.stats.held_bytes == 0
    assert stage.stats.written == 0


async def test_an_unusable_directory_is_one_error_naming_the_setting_and_the_stage_steps_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    config = config_for(blocker / "snapshots")
    stage = SnapshotStage(config)
    with caplog.at_level(logging.ERROR):
        await stage.start({})  # optional: never stops the service
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and re.match(r"^snapshots.directory .*taken/snapshots: cannot be used", errors[0])
    assert stage.health.state == PartState.UNAVAILABLE and "taken/snapshots" in (stage.health.problem or "")
    tracker = CameraTracker("door", config.tracker, 10.0)
    await run_frames(stage, tracker, 3, {})  # frames pass through untouched
    ended = stage.finish_events("door", [*tracker.finish(2, time.time())])
    assert [e.snapshot_id for e in ended if isinstance(e, TrackEvent)] == [None]
    await stage.stop()
