"""The zones-and-lines stage: zone_enter / zone_exit / loitering and line_cross events, occupancy.

Rules (the README's "Zones and lines" section says the same for users):

* Only tracks the tracker confirmed (the ones it publishes) and has seen in at least
  `analytics.min_track_frames` frames count; a track's anchor point (bottom centre of its box by
  default) decides where it is.
* Zones: `zone_enter` once the anchor has been inside for `min_dwell_s` (a track that appears
  inside enters the same way); `zone_exit`, with the dwell, once it has been outside for
  `exit_after_s`, or when the track ends (lost for good, or the camera stopped); `loitering` once
  per track and zone when the dwell passes `loiter_after_s`. Occupancy counts entered tracks.
* Lines: a track's side of a line is settled only once its anchor is at least the line's
  hysteresis away from it; a crossing is a change of settled side whose path meets the segment
  A-B, counted once per track, line and direction. A box jittering on the line never settles on
  the other side, and a new track (an id switch on the line) must first settle on one side, so it
  never makes a phantom crossing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.analytics.geometry import (
    CameraGeometry,
    Line,
    Zone,
    anchor_points,
    inside_polygon,
    resolve,
    segments_cross,
)
from streamer.config import CameraConfig, StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import Event, LineCrossEvent, TrackEvent, ZoneEvent, ZoneEventType
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import TrackBook
from streamer.core.stats import AnalyticsStats

ZONES_COLUMN = "zones"  # per track in frame messages: the zones it has entered


@dataclass
class Presence:
    """A track inside (or just outside) a zone."""

    inside_since: float
    last_inside_ts: float
    outside_since: float | None = None
    entered: bool = False
    loitered: bool = False


@dataclass
class Side:
    """The side of a line a track last settled on (-1 left, +1 right) and where it was."""

    side: int
    point: np.ndarray


@dataclass
class TrackPlaces:
    zones: dict[str, Presence] = field(default_factory=dict)
    sides: dict[str, Side] = field(default_factory=dict)
    crossed: set[tuple[str, str]] = field(default_factory=set)


class CameraAnalytics:
    """One camera's zones and lines and the state of its tracks in them."""

    def __init__(self, camera: CameraConfig, stats: AnalyticsStats, min_track_frames: int) -> None:
        self.camera = camera
        self.name = camera.name
        self.stats = stats
        self.min_track_frames = min_track_frames
        self.geometry: CameraGeometry | None = None
        self.tracks: dict[int, TrackPlaces] = {}
        self.counts: dict[str, dict[str, int]] = {
            line.name: dict.fromkeys(line.directions, 0) for line in camera.lines
        }
        self.occupancy: dict[str, int] = {zone.name: 0 for zone in camera.zones}
        for zone in camera.zones:
            stats.occupancy[(self.name, zone.name)] = 0
            for kind in ("zone_enter", "zone_exit", "loitering"):
                stats.zone_events.setdefault((self.name, zone.name, kind), 0)
        for line in camera.lines:
            for direction in line.directions:
                stats.line_crossings.setdefault((self.name, line.name, direction), 0)

    def _geometry(self, width: int, height: int) -> CameraGeometry:
        geometry = self.geometry
        if geometry is None or (geometry.width, geometry.height) != (width, height):
            if geometry is not None:  # old pixel positions say nothing about the new frame
                for places in self.tracks.values():
                    places.sides.clear()
            geometry = self.geometry = resolve(self.camera, width, height)
        return geometry

    def update(self, frame: Frame, result: FrameResult, book: TrackBook) -> None:
        geometry = self._geometry(result.width, result.height)
        events = result.events
        ended = [e.track_id for e in events if isinstance(e, TrackEvent) and e.type == "end"]
        for track_id in ended:
            events.extend(self._leave_all(track_id, frame.index, frame.capture_ts))
        tracks = result.tracks
        ids = tracks.tracker_id.tolist() if tracks.tracker_id is not None else []
        counted = [
            row for row, track_id in enumerate(ids)
            if book.frames_seen(track_id) >= self.min_track_frames
        ]
        if counted:
            rows = np.asarray(counted)
            boxes, classes = tracks.xyxy[rows], tracks.class_id[rows].tolist()
            row_ids = [ids[row] for row in counted]
            for zone in geometry.zones:
                inside = self._inside(zone, boxes, classes)
                for track_id, now_inside in zip(row_ids, inside.tolist(), strict=True):
                    self._zone_step(zone, track_id, now_inside, frame, events)
            for line in geometry.lines:
                self._line_step(line, row_ids, boxes, classes, frame, events)
        if geometry.zones:
            column = np.empty(len(ids), dtype=object)
            for row, track_id in enumerate(ids):
                places = self.tracks.get(track_id)
                column[row] = [] if places is None else [
                    zone.name for zone in geometry.zones
                    if (presence := places.zones.get(zone.name)) is not None and presence.entered
                ]
            result.tracks = Detections(
                xyxy=tracks.xyxy,
                confidence=tracks.confidence,
                class_id=tracks.class_id,
                tracker_id=tracks.tracker_id,
                data={**tracks.data, ZONES_COLUMN: column},
            )

    @staticmethod
    def _inside(zone: Zone, boxes: np.ndarray, classes: list[int]) -> np.ndarray:
        inside = inside_polygon(anchor_points(boxes, zone.config.anchor), zone.polygon)
        wanted = zone.config.classes
        if wanted is not None:
            inside &= np.isin(np.asarray(classes), wanted)
        return inside

    def _zone_step(
        self, zone: Zone, track_id: int, inside: bool, frame: Frame, events: list[Event]
    ) -> None:
        now = frame.capture_ts
        config = zone.config
        places = self.tracks.get(track_id)
        presence = places.zones.get(zone.name) if places is not None else None
        if inside:
            if presence is None:
                if places is None:
                    places = self.tracks[track_id] = TrackPlaces()
                presence = places.zones[zone.name] = Presence(now, now)
            presence.last_inside_ts, presence.outside_since = now, None
            dwell = now - presence.inside_since
            if not presence.entered and dwell >= config.min_dwell_s:
                presence.entered = True
                self.occupancy[zone.name] += 1
                events.append(self._zone_event("zone_enter", zone.name, track_id, frame, None))
            if (presence.entered and not presence.loitered and config.loiter_after_s is not None
                    and dwell >= config.loiter_after_s):
                presence.loitered = True
                events.append(self._zone_event("loitering", zone.name, track_id, frame, dwell))
            return
        if presence is None or places is None:
            return
        if presence.outside_since is None:
            presence.outside_since = now
        if now - presence.outside_since >= config.exit_after_s:
            del places.zones[zone.name]
            if presence.entered:
                events.append(self._exit(zone.name, track_id, presence, frame.index, now))

    def _exit(
        self, zone: str, track_id: int, presence: Presence, frame_index: int, capture_ts: float
    ) -> ZoneEvent:
        self.occupancy[zone] -= 1
        dwell = presence.last_inside_ts - presence.inside_since
        return self._record(ZoneEvent(
            "zone_exit", self.name, zone, track_id, frame_index, capture_ts,
            dwell_s=round(dwell, 3), occupancy=self.occupancy[zone],
        ))

    def _zone_event(
        self, kind: ZoneEventType, zone: str, track_id: int, frame: Frame, dwell: float | None
    ) -> ZoneEvent:
        return self._record(ZoneEvent(
            kind, self.name, zone, track_id, frame.index, frame.capture_ts,
            dwell_s=None if dwell is None else round(dwell, 3), occupancy=self.occupancy[zone],
        ))

    def _record(self, event: ZoneEvent) -> ZoneEvent:
        stats = self.stats
        stats.occupancy[(self.name, event.zone)] = self.occupancy[event.zone]
        key = (self.name, event.zone, event.type)
        stats.zone_events[key] = stats.zone_events.get(key, 0) + 1
        return event

    def _line_step(
        self,
        line: Line,
        track_ids: list[int],
        boxes: np.ndarray,
        classes: list[int],
        frame: Frame,
        events: list[Event],
    ) -> None:
        config = line.config
        points = anchor_points(boxes, config.anchor)
        distances = line.signed_distances(points)
        band = line.hysteresis_px
        sides = np.where(distances >= band, 1, np.where(distances <= -band, -1, 0)).tolist()
        for row, (track_id, side) in enumerate(zip(track_ids, sides, strict=True)):
            if side == 0 or (config.classes is not None and classes[row] not in config.classes):
                continue  # within the band: the side is what it was
            places = self.tracks.get(track_id)
            if places is None:
                places = self.tracks[track_id] = TrackPlaces()
            settled = places.sides.get(line.name)
            point = points[row]
            if settled is None:
                places.sides[line.name] = Side(side, point)
                continue
            if side != settled.side:
                direction = config.directions[0] if settled.side < 0 else config.directions[1]
                key = (line.name, direction)
                if key not in places.crossed and segments_cross(settled.point, point, line.a, line.b):
                    places.crossed.add(key)
                    events.append(self._crossing(line.name, direction, track_id, frame))
            settled.side, settled.point = side, point

    def _crossing(self, line: str, direction: str, track_id: int, frame: Frame) -> LineCrossEvent:
        counts = self.counts[line]
        counts[direction] += 1
        key = (self.name, line, direction)
        self.stats.line_crossings[key] = self.stats.line_crossings.get(key, 0) + 1
        return LineCrossEvent(
            self.name, line, direction, track_id, frame.index, frame.capture_ts, counts=dict(counts)
        )

    def _leave_all(self, track_id: int, frame_index: int, capture_ts: float) -> list[Event]:
        """A track ended: it leaves every zone it had entered, as of when it was last inside."""
        places = self.tracks.pop(track_id, None)
        if places is None:
            return []
        return [
            self._exit(zone, track_id, presence, frame_index, capture_ts)
            for zone, presence in places.zones.items() if presence.entered
        ]

    def finish(self, frame_index: int, capture_ts: float) -> list[Event]:
        """The camera stopped: every track leaves its zones."""
        events: list[Event] = []
        for track_id in list(self.tracks):
            events.extend(self._leave_all(track_id, frame_index, capture_ts))
        return events


class ZoneLineStage:
    """FrameStage for zones and lines; needs no model."""

    name = "zones"

    def __init__(self, config: StreamerConfig) -> None:
        self.models: list[str] = []
        self.cameras = {
            camera.name: camera for camera in config.enabled_cameras if camera.zones or camera.lines
        }
        self.min_track_frames = config.analytics.min_track_frames
        self.stats = AnalyticsStats()
        self.registered_stats = {"analytics": self.stats}
        self._state: dict[str, CameraAnalytics] = {}
        for camera in self.cameras.values():
            self._camera(camera.name)  # every configured zone and line reports 0 from the start

    def _camera(self, camera: str) -> CameraAnalytics | None:
        state = self._state.get(camera)
        if state is None and camera in self.cameras:
            state = self._state[camera] = CameraAnalytics(
                self.cameras[camera], self.stats, self.min_track_frames
            )
        return state

    async def start(self, models: dict[str, object]) -> None:
        """Nothing to take: zones and lines need no model."""

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        state = self._camera(frame.camera)
        if state is not None:
            state.update(frame, result, tracks)

    def finish_camera(self, camera: str, frame_index: int, capture_ts: float) -> list[Event]:
        state = self._state.get(camera)
        return [] if state is None else state.finish(frame_index, capture_ts)

    def forget_camera(self, camera: str) -> None:
        state = self._state.pop(camera, None)
        if state is not None:
            for zone in state.occupancy:
                self.stats.occupancy[(camera, zone)] = 0

