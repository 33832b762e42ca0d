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
from typing import Any

import numpy as np

from streamer.analytics.geometry import (
    CameraGeometry,
    Zone,
    anchor_points,
    resolve,
    segments_cross,
)
from streamer.config import CameraConfig, StreamerConfig
from streamer.config.analytics import Anchor
from streamer.core.detections import Detections
from streamer.core.events import Event, LineCrossEvent, TrackEvent, ZoneEvent, ZoneEventType
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, TrackBook
from streamer.core.stats import AnalyticsStats, StatsKind

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
class ZoneState:
    """The tracks in one zone, or on their way in or out."""

    presence: dict[int, Presence] = field(default_factory=dict)
    occupancy: int = 0


@dataclass
class LineTracks:
    """Per track and line (a column per line, in the camera's order): the side it last settled on
    (-1 left, +1 right, 0 not yet), the last point where it was settled there, and the
    (line, direction) pairs it has already crossed."""

    sides: dict[int, np.ndarray] = field(default_factory=dict)  # (L,) int8
    points: dict[int, np.ndarray] = field(default_factory=dict)  # (L, 2) pixels
    crossed: dict[int, set[tuple[int, str]]] = field(default_factory=dict)

    def forget(self, track_id: int) -> None:
        self.sides.pop(track_id, None)
        self.points.pop(track_id, None)
        self.crossed.pop(track_id, None)

    def clear_positions(self) -> None:
        self.sides.clear()
        self.points.clear()


class CameraAnalytics:
    """One camera's zones and lines and the state of its tracks in them."""

    def __init__(self, camera: CameraConfig, stats: AnalyticsStats, min_track_frames: int) -> None:
        self.camera = camera
        self.name = camera.name
        self.stats = stats
        self.min_track_frames = min_track_frames
        self.geometry: CameraGeometry | None = None
        self.zones = {zone.name: ZoneState() for zone in camera.zones}
        self.line_tracks = LineTracks()
        self.counts = {line.name: dict.fromkeys(line.directions, 0) for line in camera.lines}
        for zone in camera.zones:
            stats.occupancy[(self.name, zone.name)] = 0
            for kind in ZoneEventType:
                stats.zone_events.setdefault((self.name, zone.name, str(kind)), 0)
        for line in camera.lines:
            for direction in line.directions:
                stats.line_crossings.setdefault((self.name, line.name, direction), 0)

    @property
    def occupancy(self) -> dict[str, int]:
        return {name: state.occupancy for name, state in self.zones.items()}

    def _geometry(self, width: int, height: int) -> CameraGeometry:
        geometry = self.geometry
        if geometry is None or (geometry.width, geometry.height) != (width, height):
            if geometry is not None:  # old pixel positions say nothing about the new frame
                self.line_tracks.clear_positions()
            geometry = self.geometry = resolve(self.camera, width, height)
        return geometry

    def update(self, frame: Frame, result: FrameResult, book: TrackBook) -> None:
        geometry = self._geometry(result.width, result.height)
        events = result.events
        ended = [e.track_id for e in events if isinstance(e, TrackEvent) and e.ended]
        for track_id in ended:
            events.extend(self._leave_all(track_id, frame.index, frame.capture_ts))
        tracks = result.tracks
        ids: list[int] = tracks.tracker_id.tolist() if tracks.tracker_id is not None else []
        counted = [
            row for row, track_id in enumerate(ids)
            if book.frames_seen(track_id) >= self.min_track_frames
        ]
        if counted:
            rows = np.asarray(counted)
            boxes, classes = tracks.xyxy[rows], tracks.class_id[rows]
            row_ids = [ids[row] for row in counted]
            used = {z.config.anchor for z in geometry.zones} | {x.config.anchor for x in geometry.lines}
            anchors = {anchor: anchor_points(boxes, anchor) for anchor in used}
            inside_zones = geometry.zones_inside(anchors, len(row_ids))
            for column, zone in enumerate(geometry.zones):
                inside = inside_zones[:, column]
                if zone.config.classes is not None:
                    inside &= np.isin(classes, zone.config.classes)
                self._zone_step(zone, row_ids, inside, frame, events)
            if geometry.lines:
                self._lines_step(geometry, row_ids, anchors, classes, frame, events)
        if geometry.zones:
            result.tracks = self._with_zones_column(geometry, tracks, ids)

    def _with_zones_column(
        self, geometry: CameraGeometry, tracks: Detections, ids: list[int]
    ) -> Detections:
        """Each track's row lists the zones it has entered, in the camera's zone order."""
        in_zones: list[list[str]] = [[] for _ in ids]
        row_of = {track_id: row for row, track_id in enumerate(ids)}
        for zone in geometry.zones:
            for track_id, presence in self.zones[zone.name].presence.items():
                row = row_of.get(track_id)
                if row is not None and presence.entered:
                    in_zones[row].append(zone.name)
        column = np.empty(len(ids), dtype=object)
        for row, names in enumerate(in_zones):  # one list per row, never a 2-D array
            column[row] = names
        return Detections(
            xyxy=tracks.xyxy,
            confidence=tracks.confidence,
            class_id=tracks.class_id,
            tracker_id=tracks.tracker_id,
            data={**tracks.data, ZONES_COLUMN: column},
        )

    def _zone_step(
        self, zone: Zone, track_ids: list[int], inside: np.ndarray, frame: Frame, events: list[Event]
    ) -> None:
        now = frame.capture_ts
        config = zone.config
        state = self.zones[zone.name]
        presence_of = state.presence
        inside_rows = np.flatnonzero(inside).tolist()
        for row in inside_rows:
            track_id = track_ids[row]
            presence = presence_of.get(track_id)
            if presence is None:
                presence = presence_of[track_id] = Presence(now, now)
            presence.last_inside_ts, presence.outside_since = now, None
            dwell = now - presence.inside_since
            if not presence.entered and dwell >= config.min_dwell_s:
                presence.entered = True
                state.occupancy += 1
                events.append(self._zone_event(ZoneEventType.ENTER, zone.name, track_id, frame, None))
            if (presence.entered and not presence.loitered and config.loiter_after_s is not None
                    and dwell >= config.loiter_after_s):
                presence.loitered = True
                events.append(
                    self._zone_event(ZoneEventType.LOITERING, zone.name, track_id, frame, dwell)
                )
        if len(presence_of) == len(inside_rows):
            return  # everyone known here is inside
        now_inside = {track_ids[row] for row in inside_rows}
        seen = set(track_ids)
        for track_id in [t for t in presence_of if t in seen and t not in now_inside]:
            presence = presence_of[track_id]
            if presence.outside_since is None:
                presence.outside_since = now
            if now - presence.outside_since >= config.exit_after_s:
                del presence_of[track_id]
                if presence.entered:
                    events.append(self._exit(zone.name, track_id, presence, frame.index, now))

    def _exit(
        self, zone: str, track_id: int, presence: Presence, frame_index: int, capture_ts: float
    ) -> ZoneEvent:
        state = self.zones[zone]
        state.occupancy -= 1
        dwell = presence.last_inside_ts - presence.inside_since
        return self._record(ZoneEvent(
            ZoneEventType.EXIT, self.name, zone, track_id, frame_index, capture_ts,
            dwell_s=round(dwell, 3), occupancy=state.occupancy,
        ))

    def _zone_event(
        self, kind: ZoneEventType, zone: str, track_id: int, frame: Frame, dwell: float | None
    ) -> ZoneEvent:
        return self._record(ZoneEvent(
            kind, self.name, zone, track_id, frame.index, frame.capture_ts,
            dwell_s=None if dwell is None else round(dwell, 3),
            occupancy=self.zones[zone].occupancy,
        ))

    def _record(self, event: ZoneEvent) -> ZoneEvent:
        stats = self.stats
        stats.occupancy[(self.name, event.zone)] = self.zones[event.zone].occupancy
        key = (self.name, event.zone, str(event.type))
        stats.zone_events[key] = stats.zone_events.get(key, 0) + 1
        return event

    def _lines_step(
        self,
        geometry: CameraGeometry,
        track_ids: list[int],
        anchors: dict[Anchor, np.ndarray],
        classes: np.ndarray,
        frame: Frame,
        events: list[Event],
    ) -> None:
        """Every line at once: a (track, line) matrix of sides; Python only where one changed."""
        lines = geometry.lines
        state = self.line_tracks
        count = len(track_ids)
        current = np.empty((count, len(lines), 2))  # each track's anchor point for each line
        for column, line in enumerate(lines):
            current[:, column] = anchors[line.config.anchor]
        bands = geometry.line_bands
        distances = geometry.line_distances(current)
        sides = (distances >= bands).astype(np.int8) - (distances <= -bands)
        for column, line in enumerate(lines):
            if line.config.classes is not None:
                sides[~np.isin(classes, line.config.classes), column] = 0
        unsettled = np.zeros(len(lines), np.int8)
        previous = np.array([state.sides.get(t, unsettled) for t in track_ids]).reshape(count, -1)
        settled = sides != 0  # within the band, the side is what it was
        rows, columns = np.nonzero(settled & (sides != previous) & (previous != 0))
        for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
            line = lines[column]
            track_id = track_ids[row]
            direction = line.config.directions[0 if previous[row, column] < 0 else 1]
            crossed = state.crossed.setdefault(track_id, set())
            if (column, direction) in crossed:
                continue  # once per track, line and direction
            a, b = line.ends
            if segments_cross(state.points[track_id][column], current[row, column], a, b):
                crossed.add((column, direction))
                events.append(self._crossing(line.name, direction, track_id, frame))
        state.sides.update(zip(track_ids, np.where(settled, sides, previous)))
        unknown = np.full((len(lines), 2), np.nan)
        before = np.array([state.points.get(t, unknown) for t in track_ids]).reshape(count, -1, 2)
        state.points.update(zip(track_ids, np.where(settled[..., None], current, before)))

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
        events: list[Event] = []
        for zone, state in self.zones.items():
            presence = state.presence.pop(track_id, None)
            if presence is not None and presence.entered:
                events.append(self._exit(zone, track_id, presence, frame_index, capture_ts))
        self.line_tracks.forget(track_id)
        return events

    def finish(self, frame_index: int, capture_ts: float) -> list[Event]:
        """The camera stopped: every track leaves its zones."""
        events: list[Event] = []
        tracks = {t for state in self.zones.values() for t in state.presence}
        for track_id in sorted(tracks):
            events.extend(self._leave_all(track_id, frame_index, capture_ts))
        return events


class ZoneLineStage(FrameStage[CameraConfig]):
    """Zones and lines; needs no model."""

    name = "zones"
    needs_image = False  # boxes only: the camera's thread need not make the full-size picture

    def __init__(self, config: StreamerConfig) -> None:
        self.cameras = {
            camera.name: camera for camera in config.enabled_cameras if camera.zones or camera.lines
        }
        self.min_track_frames = config.analytics.min_track_frames
        self.stats = AnalyticsStats()
        self._state: dict[str, CameraAnalytics] = {}
        for camera in self.cameras.values():
            self._camera(camera.name)  # every configured zone and line reports 0 from the start

    def registered_stats(self) -> dict[StatsKind, object]:
        return {StatsKind.ANALYTICS: self.stats}

    def configure_camera(self, camera: CameraConfig) -> None:
        """A camera starts (at start, or added or changed at runtime): its zones and lines now;
        a zone or line no longer configured stops being reported (dashboard, metrics)."""
        self._state.pop(camera.name, None)
        zones = {zone.name for zone in camera.zones}
        lines = {line.name for line in camera.lines}
        _drop_unconfigured(self.stats.occupancy, camera.name, zones)
        _drop_unconfigured(self.stats.zone_events, camera.name, zones)
        _drop_unconfigured(self.stats.line_crossings, camera.name, lines)
        if camera.zones or camera.lines:
            self.cameras[camera.name] = camera
            self._camera(camera.name)
        else:
            self.cameras.pop(camera.name, None)

    def _camera(self, camera: str) -> CameraAnalytics | None:
        state = self._state.get(camera)
        if state is None and camera in self.cameras:
            state = self._state[camera] = CameraAnalytics(
                self.cameras[camera], self.stats, self.min_track_frames
            )
        return state

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        state = self._camera(frame.camera)
        if state is not None:
            state.update(frame, result, tracks)

    def finish_events(self, camera: str, events: list[Event]) -> list[Event]:
        """The camera stopped (its tracks' `end` events, no frame): everyone inside leaves, as of
        the last frame; the exits go out with the `end` events (and later stages picture them)."""
        state = self._state.get(camera)
        ends = [e for e in events if isinstance(e, TrackEvent) and e.ended]
        if state is None or not ends:
            return events
        return [*events, *state.finish(ends[-1].frame_index, ends[-1].capture_ts)]

    def forget_camera(self, camera: str) -> None:
        state = self._state.pop(camera, None)
        if state is not None:
            for zone in state.occupancy:
                self.stats.occupancy[(camera, zone)] = 0


def _drop_unconfigured(table: dict[Any, int], camera: str, kept: set[str]) -> None:
    """Remove a camera's counters of zones or lines (key[1]) no longer configured."""
    for key in [k for k in table if k[0] == camera and k[1] not in kept]:
        del table[key]
