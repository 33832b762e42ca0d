"""One ByteTrack per camera, turning detections into tracks and lifecycle events.

Published boxes (the tracks handed on, and the `box` of every track state and event) are clipped
to the frame, [0, width] x [0, height]: the Kalman-smoothed box of a person walking out of the
picture overshoots its edge. The tracker keeps its state unclipped; clipping that would bias its
motion model.

The tracker is told how much time passed between two updates, in its own frames, from the
frames' indices in the stream: frames the motion gate left out, or a frame-rate cap skipped, age
lost tracks as time does (ByteTrack's lost-track buffer counts time, not updates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.config import TrackerConfig
from streamer.core.detections import Detections
from streamer.core.events import TrackEvent, TrackEventType
from streamer.core.frames import Frame
from trackers import ByteTrack

DEFAULT_FRAME_RATE = 30.0


@dataclass
class TrackState:
    """What a consumer needs to know about a track; events carry it as before/after."""

    track_id: int
    box: list[float]
    score: float
    first_seen_ts: float
    last_seen_ts: float
    frames: int = 1
    attributes: dict[str, Any] = field(default_factory=dict)  # identity fields from later stages

    def snapshot(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "box": self.box,
            "score": self.score,
            "first_seen_ts": self.first_seen_ts,
            "last_seen_ts": self.last_seen_ts,
            "frames": self.frames,
            **self.attributes,
        }


class CameraTracker:
    """`update(frame, detections) -> (tracks, events)`: the tracks and their lifecycle events."""

    def __init__(
        self,
        camera: str,
        settings: TrackerConfig,
        frame_rate: float | None,
        source_fps: float | None = None,
    ) -> None:
        """`frame_rate`: frames per second the tracker is fed (a cap, or the stream's own);
        `source_fps`: the stream's rate, which frame indices count in (None: one index, one frame)."""
        self.camera = camera
        bytetrack = settings.bytetrack_settings(frame_rate or DEFAULT_FRAME_RATE)
        self._tracker = ByteTrack(bytetrack)
        self._frames_per_index = bytetrack.frame_rate / source_fps if source_fps else 1.0
        self._last_index: int | None = None
        self.states: dict[int, TrackState] = {}

    def _elapsed_frames(self, index: int) -> int:
        """Tracker frames since the previous update, from the stream's frame indices (>= 1)."""
        previous, self._last_index = self._last_index, index
        if previous is None or index <= previous:  # first frame, or the stream started over
            return 1
        return max(1, round((index - previous) * self._frames_per_index))

    def update(self, frame: Frame, detections: Detections) -> tuple[Detections, list[TrackEvent]]:
        output = self._tracker.update(
            detections.xyxy, detections.confidence, elapsed_frames=self._elapsed_frames(frame.index)
        )
        events: list[TrackEvent] = []
        rows = output.detection_index
        matched = rows >= 0
        class_id = np.zeros(len(rows), np.int64)
        class_id[matched] = detections.class_id[rows[matched]]
        bounds = np.array([frame.width, frame.height, frame.width, frame.height], np.float32)
        tracks = Detections(
            xyxy=np.clip(output.xyxy.astype(np.float32), 0.0, bounds),
            confidence=output.score.astype(np.float32),
            class_id=class_id,
            tracker_id=output.tracker_id.astype(np.int64),
        )
        for track_id, box, score in zip(
            output.tracker_id.tolist(), tracks.xyxy.tolist(), tracks.confidence.tolist()
        ):
            state = self.states.get(track_id)
            box = [round(v, 1) for v in box]
            if state is None:
                state = TrackState(track_id, box, score, frame.capture_ts, frame.capture_ts)
                self.states[track_id] = state
                events.append(self._event(TrackEventType.NEW, frame, None, state.snapshot()))
            else:
                state.box, state.score, state.last_seen_ts = box, score, frame.capture_ts
                state.frames += 1
        for track_id in output.ended_ids:
            ended = self.states.pop(int(track_id), None)
            if ended is not None:
                events.append(self._event(TrackEventType.END, frame, ended.snapshot(), None))
        return tracks, events

    def frames_seen(self, track_id: int) -> int:
        state = self.states.get(track_id)
        return 0 if state is None else state.frames

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> TrackEvent | None:
        """Attach identity fields to a track; returns an `update` event when something changed."""
        state = self.states.get(track_id)
        if state is None:
            return None
        changed = {k: v for k, v in attributes.items() if state.attributes.get(k) != v}
        if not changed:
            return None
        before = state.snapshot()
        state.attributes.update(changed)
        return self._event(TrackEventType.UPDATE, frame, before, state.snapshot())

    def finish(self, frame_index: int, capture_ts: float) -> list[TrackEvent]:
        """End every open track (camera stopped or file finished), as of the last frame seen."""
        events = [
            TrackEvent(
                TrackEventType.END, self.camera, s.track_id, frame_index, capture_ts, s.snapshot(), None
            )
            for s in self.states.values()
        ]
        self.states.clear()
        return events

    def _event(
        self,
        kind: TrackEventType,
        frame: Frame,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> TrackEvent:
        track_id = int((after or before or {})["track_id"])
        return TrackEvent(kind, self.camera, track_id, frame.index, frame.capture_ts, before, after)
