"""The camera's tracker counts time from the frames' indices in the stream: frames the motion gate
or a frame-rate cap left out age lost tracks as the seconds they stand for."""

from __future__ import annotations

import numpy as np

from streamer.config import TrackerConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.tracking.camera_tracker import CameraTracker

PERSON = [300.0, 100.0, 360.0, 300.0]
SECOND_BUFFER = TrackerConfig(track_buffer=30)  # frames at 30 fps: one second


def frame(index: int) -> Frame:
    return Frame("cam", index, 1000.0 + index, 0.0, np.zeros((432, 768, 3), np.uint8))


def people(present: bool) -> Detections:
    boxes = np.array([PERSON] if present else [], np.float32).reshape(-1, 4)
    return Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int64))


def ended(tracker: CameraTracker, index: int, present: bool = False) -> list[int]:
    _tracks, events = tracker.update(frame(index), people(present))
    return [event.track_id for event in events if event.type == "end"]


def test_a_lost_track_ends_after_a_second_of_video_however_few_frames_were_detected() -> None:
    tracker = CameraTracker("cam", SECOND_BUFFER, 10.0, source_fps=10.0)  # 10 frames lost at most
    for index in (1, 2):
        assert ended(tracker, index, present=True) == []
    assert ended(tracker, 12) == [], "10 frames (1 s) after it was last seen: still kept"
    assert ended(tracker, 13) == [1], "11 frames: gone, after only two detected frames without it"


def test_frames_skipped_by_a_cap_count_as_the_time_they_stand_for() -> None:
    # max_fps 10 on a 30 fps camera: indices step by 3, one tracker frame each
    tracker = CameraTracker("cam", SECOND_BUFFER, 10.0, source_fps=30.0)
    for index in (3, 6):
        assert ended(tracker, index, present=True) == []
    endings = [ended(tracker, index) for index in range(9, 6 + 3 * 11 + 1, 3)]
    assert endings[:-1] == [[]] * 10 and endings[-1] == [1]


def test_a_stream_that_starts_over_is_not_a_jump_back_in_time() -> None:
    tracker = CameraTracker("cam", SECOND_BUFFER, 10.0, source_fps=10.0)
    for index in (100, 101):
        ended(tracker, index, present=True)
    _tracks, events = tracker.update(frame(1), people(True))  # a reconnect restarted the count
    assert events == [] and len(_tracks) == 1
