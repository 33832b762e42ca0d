"""The snapshot stage, last after tracking: a picture of each event, and the events index.

Per frame it keeps each track's best view so far (person-view quality from the identities stage's
scoring, times sharpness), holding only a crop and the (scaled) frame with the boxes of that
moment. When a track ends, or a zone or line event fires, it hands a picture job to the writer
thread and gives the event a `snapshot_id`; encoding and disk work never run on the event loop,
and when the writer is behind the event simply goes without picture (counted).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from streamer.config import CameraConfig, StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import Event, LineCrossEvent, TrackEvent, ZoneEvent, new_id
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, TrackBook
from streamer.core.stats import PartHealth, PartState, StatsKind
from streamer.identities.quality import person_qualities, sharpness
from streamer.snapshots.archive import MB, SUMMARY_FIELD, SnapshotArchive, disk_free_bytes
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.writer import PictureJob, SnapshotWriter

log = logging.getLogger(__name__)

PicturedEvent = TrackEvent | ZoneEvent | LineCrossEvent


@dataclass(slots=True)
class BestView:
    """A track's best view: its crop, and the frame it came from with every box of that moment."""

    quality: float
    crop: np.ndarray
    frame: np.ndarray  # scaled by `scale` (the decoded frame itself when small enough)
    scale: float
    boxes: np.ndarray
    track_ids: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.crop.nbytes + self.frame.nbytes)


@dataclass(slots=True)
class TrackViews:
    frames: int = 0
    best: BestView | None = None


def crop_box(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray | None:
    """A copy of the box grown by `margin` of its size, clipped to the image; None when empty."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    grow_x, grow_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - grow_x)), max(0, int(y1 - grow_y))
    right, bottom = min(width, int(np.ceil(x2 + grow_x))), min(height, int(np.ceil(y2 + grow_y)))
    if right - left < 2 or bottom - top < 2:
        return None
    return image[top:bottom, left:right].copy()


class SnapshotStage(FrameStage[CameraConfig]):
    """Event pictures; also pictures the `end` events of a stopping camera."""

    name = "snapshots"
    needs_image = True  # the best view of each track is cut out of the full-size picture

    def __init__(self, config: StreamerConfig, *, free_bytes: Any = disk_free_bytes) -> None:
        self.settings = config.snapshots
        self.reid = config.reid  # person-view quality thresholds (box size, border margin)
        self.models: list[str] = []
        self.stats = SnapshotStats()
        self.health = PartHealth()
        self.available = False  # the archive opened: pictures are made
        self.archive = SnapshotArchive(self.settings, self.stats, free_bytes, self.health)
        self.writer = SnapshotWriter(self.archive, self.settings, self.stats)
        self.kinds = frozenset(self.settings.events)
        self._views: dict[str, dict[int, TrackViews]] = {}

    def registered_stats(self) -> dict[StatsKind, object]:
        return {StatsKind.STAGE: self.stats, StatsKind.PART: self.health}

    async def start(self, models: Mapping[str, Any]) -> None:
        """Open the archive; one that cannot be used is reported (one ERROR, `/readyz`, the
        dashboard) and the cameras run without event pictures: they are optional."""
        try:
            await asyncio.to_thread(self.writer.start)
        except (OSError, sqlite3.Error) as exc:
            problem = (
                f"snapshots.directory {self.settings.directory}: cannot be used: "
                f"{getattr(exc, 'strerror', None) or exc}"
            )
            self.health.set(PartState.UNAVAILABLE, problem)
            log.error("%s; the cameras run without event pictures", problem)
            return
        self.available = True
        log.info("snapshots: writing to %s", self.settings.directory.resolve())

    async def stop(self) -> None:
        if self.available:
            await asyncio.to_thread(self.writer.stop)

    def forget_camera(self, camera: str) -> None:
        for views in self._views.pop(camera, {}).values():
            self._release(views)

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        if not self.available:
            return
        views = self._views.setdefault(frame.camera, {})
        self._update_views(frame, result.tracks, views)
        if result.events:
            result.events = self._record(result.events, views, frame, result.tracks)

    def finish_events(self, camera: str, events: list[Event]) -> list[Event]:
        """A stopping camera's `end` events (no frame): pictured from the best views still held."""
        if not self.available:
            return events
        return self._record(events, self._views.get(camera, {}), None, None)

    def _update_views(self, frame: Frame, tracks: Detections, views: dict[int, TrackViews]) -> None:
        if tracks.tracker_id is None or len(tracks) == 0:
            return
        context: tuple[np.ndarray, float] | None = None  # the frame to hold, made once per frame
        qualities = person_qualities(tracks, frame.width, frame.height, self.reid).tolist()
        for row, track_id in enumerate(tracks.tracker_id.tolist()):
            state = views.get(track_id)
            if state is None:
                state = views[track_id] = TrackViews()
            state.frames += 1
            best = state.best
            rough = qualities[row]
            if best is not None and rough <= best.quality * (1 + self.settings.better_by):
                continue  # sharpness only lowers it: it cannot win
            crop = crop_box(frame.image, tracks.xyxy[row], self.settings.crop_margin)
            if crop is None:
                continue
            quality = rough * sharpness(crop, self.settings.sharp_laplacian_variance)
            if best is not None and quality <= best.quality * (1 + self.settings.better_by):
                continue
            if context is None:
                context = self._held_frame(frame.image)
            view = BestView(quality, crop, context[0], context[1], tracks.xyxy.copy(),
                            tracks.tracker_id.copy())
            held = self.stats.held_bytes - (best.nbytes if best is not None else 0) + view.nbytes
            if held > self.settings.max_held_mb * MB:
                self.stats.dropped_memory += 1
                continue
            self.stats.held_bytes = held
            state.best = view

    def _held_frame(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame as held for later annotation: scaled down to `frame_max_width` when wider."""
        height, width = image.shape[:2]
        scale = self.settings.frame_max_width / width
        if scale >= 1.0:
            return image, 1.0  # decoded frames are never written to: holding it costs no copy
        size = (round(width * scale), round(height * scale))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale

    def _record(
        self,
        events: list[Event],
        views: dict[int, TrackViews],
        frame: Frame | None,
        tracks: Detections | None,
    ) -> list[Event]:
        """Events with their snapshot ids; ended tracks' views are let go after every event."""
        recorded = [self._recorded(event, views, frame, tracks) for event in events]
        for event in events:
            if isinstance(event, TrackEvent) and event.ended:
                self._release(views.pop(event.track_id, None))
        return recorded

    def _recorded(
        self,
        event: Event,
        views: dict[int, TrackViews],
        frame: Frame | None,
        tracks: Detections | None,
    ) -> Event:
        if not isinstance(event, TrackEvent | ZoneEvent | LineCrossEvent) or event.type not in self.kinds:
            return event
        state = views.get(event.track_id)
        if isinstance(event, TrackEvent):
            if state is None or state.frames < self.settings.min_track_frames:
                return event  # too short to be a person worth a picture
            job = self._ended_track_job(event, state)
        else:
            job = self._place_job(event, state, frame, tracks)
        if job is not None and not self.writer.admits_picture():
            self.archive.drop_picture()  # counted and told by the pause (a line per interval)
            job = None
        if job is None:
            self.writer.submit(event_payload(event), None)
            return event
        pictured = replace(event, snapshot_id=job.snapshot_id)
        return pictured if self.writer.submit(event_payload(pictured), job) else event

    def _ended_track_job(self, event: TrackEvent, state: TrackViews) -> PictureJob | None:
        best = state.best
        if best is None:
            return None
        caption = f"{event.camera} #{event.track_id} (best view)"
        return PictureJob(new_id(), event.camera, event.capture_ts, best.crop, best.frame, best.scale,
                          best.boxes, best.track_ids, event.track_id, caption)

    def _place_job(
        self,
        event: ZoneEvent | LineCrossEvent,
        state: TrackViews | None,
        frame: Frame | None,
        tracks: Detections | None,
    ) -> PictureJob | None:
        """The track's best view as crop, and the frame where the event happened."""
        if frame is None or tracks is None or tracks.tracker_id is None:
            return None
        crop = state.best.crop if state is not None and state.best is not None else None
        if crop is None:
            rows = np.flatnonzero(tracks.tracker_id == event.track_id)
            if len(rows) == 0:
                return None
            crop = crop_box(frame.image, tracks.xyxy[rows[0]], self.settings.crop_margin)
            if crop is None:
                return None
        if isinstance(event, LineCrossEvent):
            caption = f"{event.camera} #{event.track_id} {event.line}: {event.direction}"
        else:
            caption = f"{event.camera} #{event.track_id} {event.zone}: {event.type}"
        return PictureJob(new_id(), event.camera, event.capture_ts, crop, frame.image, 1.0,
                          tracks.xyxy.copy(), tracks.tracker_id.copy(), event.track_id, caption)

    def _release(self, views: TrackViews | None) -> None:
        if views is not None and views.best is not None:
            self.stats.held_bytes -= views.best.nbytes
            views.best = None


def event_payload(event: PicturedEvent) -> dict[str, Any]:
    """The event as indexed: its payload, id and summary (what the events page shows)."""
    return {**event.payload(), "id": event.id, SUMMARY_FIELD: event.summary()}
