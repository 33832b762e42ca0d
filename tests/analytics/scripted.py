"""Scripted tracks for the zones-and-lines stage: boxes by hand, frame by frame, no video."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.analytics.stage import ZONES_COLUMN, ZoneLineStage
from streamer.config import StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import Event, LineCrossEvent, TrackEvent, TrackEventType, ZoneEvent
from streamer.core.frames import Frame, FrameResult

CAMERA = "cam"
FPS = 10.0
WIDTH, HEIGHT = 768, 576


def config(zones: list[dict[str, Any]] | None = None, lines: list[dict[str, Any]] | None = None,
           **analytics: Any) -> StreamerConfig:
    return StreamerConfig.model_validate({
        "analytics": {"min_track_frames": 1, **analytics},
        "cameras": [{"name": CAMERA, "url": "/x.mp4", "zones": zones or [], "lines": lines or []}],
    })


def feet_box(x: float, y: float, width: float = 40, height: float = 100) -> list[float]:
    """A person box whose bottom centre (the default anchor) is at (x, y)."""
    return [x - width / 2, y - height, x + width / 2, y]


@dataclass
class ScriptedBook:
    """The TrackBook of scripted tracks: frames seen per id, as the tracker counts them."""

    seen: dict[int, int] = field(default_factory=dict)

    def frames_seen(self, track_id: int) -> int:
        return self.seen.get(track_id, 0)

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> TrackEvent | None:
        return None


@dataclass
class Script:
    """Feeds frames of {track_id: box} to the stage; collects every event and frame result."""

    stage: ZoneLineStage
    width: int = WIDTH
    height: int = HEIGHT
    book: ScriptedBook = field(default_factory=ScriptedBook)
    index: int = 0
    t0: float = 1_700_000_000.0
    events: list[Event] = field(default_factory=list)
    results: list[FrameResult] = field(default_factory=list)

    @property
    def now(self) -> float:
        return self.t0 + self.index / FPS

    async def frame(self, boxes: dict[int, list[float]], ended: tuple[int, ...] = ()) -> list[Event]:
        ids = sorted(boxes)
        for track_id in ids:
            self.book.seen[track_id] = self.book.seen.get(track_id, 0) + 1
        tracks = Detections(
            xyxy=np.array([boxes[i] for i in ids], np.float32).reshape(-1, 4),
            confidence=np.full(len(ids), 0.9, np.float32),
            class_id=np.zeros(len(ids), np.int64),
            tracker_id=np.array(ids, np.int64),
        )
        image = np.zeros((self.height, self.width, 3), np.uint8)
        frame = Frame(CAMERA, self.index, self.now, 0.0, image)
        end_events: list[Event] = [
            TrackEvent(TrackEventType.END, CAMERA, i, self.index, self.now, {"track_id": i}, None)
            for i in ended
        ]
        for track_id in ended:
            self.book.seen.pop(track_id, None)
        result = FrameResult(CAMERA, self.index, self.now, self.width, self.height, tracks, 0.0, {},
                             events=end_events)
        await self.stage.process(frame, result, self.book)
        self.index += 1
        new = [e for e in result.events if not isinstance(e, TrackEvent)]
        self.events.extend(new)
        self.results.append(result)
        return new

    async def walk(self, track_id: int, points: list[tuple[float, float]]) -> list[Event]:
        out: list[Event] = []
        for x, y in points:
            out += await self.frame({track_id: feet_box(x, y)})
        return out

    def zones_of(self, track_id: int) -> list[str]:
        """The zones the last frame message lists for a track."""
        result = self.results[-1]
        assert result.tracks.tracker_id is not None
        row = result.tracks.tracker_id.tolist().index(track_id)
        return list(result.tracks.data[ZONES_COLUMN][row])


def zone_events(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.type, e.zone, e.track_id) for e in events if isinstance(e, ZoneEvent)]


def crossings(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.line, e.direction, e.track_id) for e in events if isinstance(e, LineCrossEvent)]
