"""ByteTrack's lost-track buffer counts time: updates that say frames were skipped (motion gating)
age lost tracks by those frames, and a person seen again within the buffer keeps the id."""

from __future__ import annotations

import numpy as np
import pytest

from trackers import ByteTrack, ByteTrackSettings, TrackerOutput

HIGH = 0.9
STILL = [300.0, 250.0, 340.0, 350.0]  # a person standing still
NOTHING = np.empty((0, 4))


def seen(tracker: ByteTrack, elapsed_frames: int = 1) -> TrackerOutput:
    return tracker.update(np.array([STILL]), np.array([HIGH]), elapsed_frames=elapsed_frames)


def unseen(tracker: ByteTrack, elapsed_frames: int = 1) -> TrackerOutput:
    return tracker.update(NOTHING, np.empty(0), elapsed_frames=elapsed_frames)


def settings(buffer_frames: int) -> ByteTrackSettings:
    return ByteTrackSettings(track_buffer=buffer_frames, track_buffer_fps=10.0, frame_rate=10.0)


def test_a_lost_track_expires_after_the_buffer_in_time_not_in_updates() -> None:
    tracker = ByteTrack(settings(buffer_frames=30))  # 3 s at 10 fps
    seen(tracker)
    track_id = int(seen(tracker).tracker_id[0])
    # One update per second of skipped frames: 3 updates are 30 frames, still within the buffer.
    for _ in range(3):
        assert track_id not in unseen(tracker, elapsed_frames=10).ended_ids
    assert unseen(tracker, elapsed_frames=10).ended_ids == (track_id,)
    assert tracker.frame_id == 2 + 40


def test_updates_every_frame_age_the_same_as_one_update_for_all_of_them() -> None:
    per_frame, skipping = ByteTrack(settings(buffer_frames=10)), ByteTrack(settings(buffer_frames=10))
    for tracker in (per_frame, skipping):
        seen(tracker)
        seen(tracker)
    ended_per_frame = [unseen(per_frame).ended_ids for _ in range(11)]
    assert ended_per_frame[-1] == (1,) and not any(ended_per_frame[:-1])
    assert unseen(skipping, elapsed_frames=10).ended_ids == ()
    assert unseen(skipping, elapsed_frames=1).ended_ids == (1,)


def test_a_still_person_detected_once_a_second_keeps_the_id() -> None:
    tracker = ByteTrack(settings(buffer_frames=30))
    first = seen(tracker)
    ids = [int(seen(tracker).tracker_id[0])]
    for _ in range(20):  # 20 s of keep-alive detections only
        out = seen(tracker, elapsed_frames=10)
        assert out.ended_ids == () and len(out) == 1
        ids.append(int(out.tracker_id[0]))
    assert set(ids) == {1} and len(first) == 1
    assert np.allclose(out.xyxy[0], STILL, atol=1.0), "a still box stays put"


def test_the_first_update_is_frame_one_whatever_time_is_given() -> None:
    tracker = ByteTrack(settings(buffer_frames=30))
    assert len(seen(tracker, elapsed_frames=25)) == 1, "the first frame's detections are trusted"
    assert tracker.frame_id == 1


def test_elapsed_frames_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="elapsed_frames"):
        unseen(ByteTrack(), elapsed_frames=0)
