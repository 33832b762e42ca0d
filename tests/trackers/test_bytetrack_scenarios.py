"""ByteTrack behaviour on synthetic scenes whose true identities are known."""

from __future__ import annotations

import numpy as np
import pytest

from trackers import ByteTrack, ByteTrackSettings, TrackerOutput
from trackers.matching import iou_matrix

HIGH = 0.9
WIDTH, HEIGHT = 40.0, 100.0


def box(centre_x: float, centre_y: float = 300.0, width: float = WIDTH,
        height: float = HEIGHT) -> list[float]:
    half_width, half_height = width / 2, height / 2
    return [centre_x - half_width, centre_y - half_height,
            centre_x + half_width, centre_y + half_height]


def feed(tracker: ByteTrack, boxes: list[list[float]], scores: list[float]) -> TrackerOutput:
    return tracker.update(np.array(boxes, dtype=float).reshape(-1, 4), np.array(scores))


def ids_by_input_row(out: TrackerOutput) -> dict[int, int]:
    return dict(zip(out.detection_index.tolist(), out.tracker_id.tolist(), strict=True))


def _same(a: TrackerOutput, b: TrackerOutput) -> bool:
    return (
        np.array_equal(a.tracker_id, b.tracker_id) and np.array_equal(a.xyxy, b.xyxy)
        and np.array_equal(a.score, b.score)
        and np.array_equal(a.detection_index, b.detection_index)
        and (a.started_ids, a.ended_ids, a.lost_ids) == (b.started_ids, b.ended_ids, b.lost_ids)
    )


@pytest.mark.parametrize(
    ("speed", "vertical_offset"),
    [(3.0, 0.0), (3.0, 20.0), (7.0, 10.0), (12.0, 30.0)],
)
def test_crossing_targets_keep_their_ids(speed: float, vertical_offset: float) -> None:
    tracker = ByteTrack()
    start, frames = 200.0, 70
    ids_seen: list[tuple[int, int]] = []
    for frame in range(frames):
        left = box(start + speed * frame, 300.0)
        right = box(start + speed * (frames - frame) + 0.5, 300.0 + vertical_offset)
        # Alternate the input order so detection_index, not position, carries the identity.
        boxes, truth = ([left, right], ["left", "right"]) if frame % 2 else ([right, left],
                                                                              ["right", "left"])
        out = feed(tracker, boxes, [HIGH, HIGH])
        by_row = ids_by_input_row(out)
        assert sorted(by_row) == [0, 1], f"frame {frame}: both targets must be reported"
        ids_seen.append((by_row[truth.index("left")], by_row[truth.index("right")]))
        overlap = iou_matrix(out.xyxy.astype(float), np.array(boxes)[out.detection_index])
        assert np.diag(overlap).min() > 0.7, "smoothed boxes must stay on their targets"
    left_id, right_id = ids_seen[0]
    assert left_id != right_id
    assert set(ids_seen) == {(left_id, right_id)}, "identities swapped while crossing"


@pytest.mark.parametrize(
    ("dip_score", "reported_during_dip"),
    [(0.3, True), (0.15, True), (0.05, False)],
)
def test_low_score_detections_keep_a_track_alive(dip_score: float,
                                                 reported_during_dip: bool) -> None:
    tracker = ByteTrack()
    dip_frames = range(5, 9)
    for frame in range(12):
        score = dip_score if frame in dip_frames else HIGH
        out = feed(tracker, [box(100.0 + 4 * frame)], [score])
        expect_reported = reported_during_dip or frame not in dip_frames
        assert out.tracker_id.tolist() == ([1] if expect_reported else []), f"frame {frame}"
        if frame == dip_frames[0]:
            assert out.lost_ids == (() if reported_during_dip else (1,))


@pytest.mark.parametrize(
    ("score", "starts_track"),
    [(0.05, False), (0.3, False), (0.55, False), (0.6, True), (0.9, True)],
)
def test_only_confident_detections_start_tracks(score: float, starts_track: bool) -> None:
    tracker = ByteTrack()
    reported = [feed(tracker, [box(100.0)], [score]).tracker_id.tolist() for _ in range(5)]
    assert reported == ([[1]] * 5 if starts_track else [[]] * 5)


@pytest.mark.parametrize(
    ("missing_frames", "frame_rate", "same_id"),
    [(10, 30, True), (30, 30, True), (31, 30, False), (15, 15, True), (16, 15, False)],
)
def test_lost_track_ends_after_the_buffer(missing_frames: int, frame_rate: int,
                                          same_id: bool) -> None:
    tracker = ByteTrack(ByteTrackSettings(frame_rate=frame_rate, track_buffer=30))
    for _ in range(5):
        assert feed(tracker, [box(100.0)], [HIGH]).tracker_id.tolist() == [1]
    ended_at = []
    for gap_frame in range(missing_frames):
        out = feed(tracker, [], [])
        assert out.lost_ids == ((1,) if gap_frame == 0 else ())
        if out.ended_ids:
            ended_at.append((gap_frame, out.ended_ids))
    back = [feed(tracker, [box(100.0)], [HIGH]) for _ in range(3)]
    if same_id:
        assert ended_at == []
        assert [out.tracker_id.tolist() for out in back] == [[1], [1], [1]]
    else:
        assert ended_at == [(frame_rate, (1,))]
        # A newcomer is tentative on its first frame and confirmed on its second.
        assert [out.tracker_id.tolist() for out in back] == [[], [2], [2]]
        assert back[1].started_ids == (2,)


def test_new_targets_get_fresh_ids_in_order_of_appearance() -> None:
    tracker = ByteTrack()
    positions = [100.0, 300.0, 500.0]
    started: list[int] = []
    for frame in range(8):
        present = positions[: 1 + frame // 3]  # a new target every third frame
        out = feed(tracker, [box(x) for x in present], [HIGH] * len(present))
        started.extend(out.started_ids)
        assert len(set(out.tracker_id.tolist())) == len(out)
    assert started == [1, 2, 3]
    assert sorted(ids_by_input_row(out).items()) == [(0, 1), (1, 2), (2, 3)]
    assert tracker.active_count == 3
    assert tracker.frame_id == 8


def test_tracker_instances_do_not_share_ids() -> None:
    busy, quiet, reference = ByteTrack(), ByteTrack(), ByteTrack()
    three = [box(100.0), box(300.0), box(500.0)]
    for _ in range(3):
        busy_out = feed(busy, three, [HIGH] * 3)
        quiet_out = feed(quiet, [box(700.0)], [HIGH])
        reference_out = feed(reference, three, [HIGH] * 3)
        assert quiet_out.tracker_id.tolist() == [1]
        assert _same(busy_out, reference_out), "another tracker's updates leaked into this one"
    assert busy_out.tracker_id.tolist() == [1, 2, 3]


def random_scene(seed: int, frames: int = 60,
                 targets: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    """Noisy walkers with missed detections, random scores and clutter, in shuffled order."""
    rng = np.random.default_rng(seed)
    position = rng.uniform(0, 800, (targets, 2))
    velocity = rng.normal(0, 3, (targets, 2))
    size = rng.uniform(40, 160, (targets, 1)) * [0.4, 1.0]
    scene = []
    for _ in range(frames):
        position += velocity
        seen = rng.random(targets) > 0.15
        boxes = np.c_[position, position + size][seen] + rng.normal(0, 2, (seen.sum(), 4))
        clutter = rng.uniform(0, 800, (rng.integers(0, 4), 2))
        boxes = np.r_[boxes, np.c_[clutter, clutter + 30]]
        scores = rng.uniform(0.0, 1.0, len(boxes))
        order = rng.permutation(len(boxes))
        scene.append((boxes[order], scores[order]))
    return scene


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_input_gives_identical_output(seed: int) -> None:
    scene = random_scene(seed)
    tracker, again = ByteTrack(), ByteTrack()
    first_run = [tracker.update(boxes, scores) for boxes, scores in scene]
    second_run = [again.update(boxes, scores) for boxes, scores in scene]
    tracker.reset()
    after_reset = [tracker.update(boxes, scores) for boxes, scores in scene]
    assert sum(len(out) for out in first_run) > 100, "the scene must actually produce tracks"
    assert any(out.lost_ids for out in first_run)
    assert all(_same(a, b) for a, b in zip(first_run, second_run, strict=True))
    assert all(_same(a, b) for a, b in zip(first_run, after_reset, strict=True))


def test_small_tracks_are_tracked_but_not_reported() -> None:
    tracker = ByteTrack(ByteTrackSettings(min_box_area=5000.0))
    small, large = box(100.0, width=40, height=100), box(400.0, width=60, height=120)
    outputs = [feed(tracker, [small, large], [HIGH, HIGH]) for _ in range(3)]
    assert outputs[0].started_ids == (1, 2)
    assert [out.detection_index.tolist() for out in outputs] == [[1], [1], [1]]
    assert tracker.active_count == 2


def test_unusable_input_rows_are_ignored() -> None:
    tracker = ByteTrack()
    boxes = [box(100.0), [50.0, 50.0, 50.0, 90.0], [np.nan, 0.0, 10.0, 10.0], box(300.0)]
    out = feed(tracker, boxes, [HIGH] * 4)
    assert out.detection_index.tolist() == [0, 3]
    empty = tracker.update(np.empty((0, 4)), np.empty(0))
    assert empty.xyxy.shape == (0, 4)
    assert empty.tracker_id.dtype == np.int64
    assert empty.lost_ids == (1, 2)


@pytest.mark.parametrize(
    "bad",
    [
        {"track_low_thresh": 0.6, "track_high_thresh": 0.5},
        {"track_high_thresh": 1.5},
        {"new_track_thresh": -0.1},
        {"track_buffer": -1},
        {"frame_rate": 0.0},
    ],
)
def test_inconsistent_settings_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ByteTrackSettings(**bad)  # type: ignore[arg-type]


def test_mismatched_boxes_and_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        ByteTrack().update(np.zeros((3, 4)), np.zeros(2))
