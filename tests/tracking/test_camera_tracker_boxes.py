"""Published track boxes lie inside the frame; the tracker's own state is not clipped.

A person at the edge of the picture, or the Kalman-smoothed box of one walking out of it, reaches
past the frame (x1 = -2.2 or x2 = 773.2 on a 768-wide frame were published). Frame messages and the
before/after states of track events carry boxes clipped to [0, width] x [0, height].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.config import TrackerConfig
from streamer.core.detections import Detections
from streamer.core.events import TrackEvent
from streamer.core.frames import Frame, FrameResult
from streamer.publishing.messages import event_message, frame_message
from streamer.tracking.camera_tracker import CameraTracker
from tests.publishing.support import validate
from trackers import ByteTrack

WIDTH, HEIGHT = 768, 432
FPS = 10.0
FRAMES = 10  # the walker's last box, 748..768, is still in the picture
STILL_LEFT = [-12.0, 40.0, 60.0, 250.0]  # partly left of the frame, standing still
STILL_BOTTOM = [300.0, 300.0, 360.0, 450.0]  # partly below the frame
SPEED = 12.0  # px per frame to the right, leaving the picture


def walker(frame: int) -> list[float]:
    """A person walking out on the right; the detector reports the box it sees, cut at the edge."""
    x1 = 640.0 + SPEED * frame
    return [x1, 120.0, min(x1 + 60.0, WIDTH), 330.0]


def detections_at(frame: int) -> Detections:
    boxes = np.array([STILL_LEFT, STILL_BOTTOM, walker(frame)], np.float32)
    return Detections(
        xyxy=boxes,
        confidence=np.full(len(boxes), 0.9, np.float32),
        class_id=np.zeros(len(boxes), np.int64),
    )


def frame_at(index: int) -> Frame:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    return Frame(camera="cam", index=index, capture_ts=1000.0 + index / FPS,
                 captured_monotonic=0.0, image=image)


def inside(box: list[float]) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 <= x2 <= WIDTH and 0 <= y1 <= y2 <= HEIGHT


def run() -> tuple[CameraTracker, list[dict[str, Any]], list[TrackEvent], list[np.ndarray]]:
    """Frame messages, events and the raw tracker's boxes for the same detections."""
    tracker = CameraTracker("cam", TrackerConfig(), FPS)
    raw = ByteTrack(TrackerConfig().bytetrack_settings(FPS))
    messages: list[dict[str, Any]] = []
    events: list[TrackEvent] = []
    raw_boxes: list[np.ndarray] = []
    for index in range(FRAMES):
        frame, detections = frame_at(index), detections_at(index)
        tracks, new_events = tracker.update(frame, detections)
        raw_boxes.append(raw.update(detections.xyxy, detections.confidence).xyxy)
        result = FrameResult(camera="cam", frame_index=index, capture_ts=frame.capture_ts,
                             width=WIDTH, height=HEIGHT, tracks=tracks, latency_s=0.0, timings={})
        messages.append(frame_message(result))
        events += new_events
        if index == FRAMES // 2:  # an identity stage names the walker: an `update` event
            walker_id = max(tracker.states)
            annotated = tracker.annotate(frame, walker_id, name="alice")
            assert annotated is not None
            events.append(annotated)
    events += tracker.finish(FRAMES, 1000.0 + FRAMES / FPS)
    return tracker, messages, events, raw_boxes


def test_frame_messages_carry_boxes_inside_the_frame() -> None:
    _tracker, messages, _events, raw_boxes = run()
    raw = np.concatenate(raw_boxes)
    # The tracker itself reaches past the frame on three sides: there is something to clip.
    assert raw[:, 0].min() < 0 and raw[:, 2].max() > WIDTH and raw[:, 3].max() > HEIGHT
    published = [track["box"] for message in messages for track in message["tracks"]]
    assert len(published) >= 3 * (FRAMES - 1)
    assert all(inside(box) for box in published), [b for b in published if not inside(b)]
    for message in messages:
        validate(message)


def test_published_boxes_are_the_tracker_boxes_clipped() -> None:
    """Clipping happens only where boxes are published: frame after frame, the camera's tracker
    reports what a ByteTrack fed the same detections reports, clipped; its state is not."""
    _tracker, messages, _events, raw_boxes = run()
    for message, raw in zip(messages, raw_boxes, strict=True):
        published = np.array([track["box"] for track in message["tracks"]]).reshape(-1, 4)
        expected = np.clip(raw, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
        np.testing.assert_allclose(published, expected, atol=0.051)  # published to 0.1 px


def test_track_events_carry_boxes_inside_the_frame() -> None:
    _tracker, _messages, events, _raw = run()
    kinds = {event.type for event in events}
    assert kinds == {"new", "update", "end"}, kinds
    for event in events:
        message = event_message(event)
        validate(message)
        for state in (message["before"], message["after"]):
            if state is not None:
                assert inside(state["box"]), (event.type, state["box"])
