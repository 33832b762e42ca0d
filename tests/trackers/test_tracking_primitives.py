"""Overlap, assignment and Kalman building blocks that ByteTrack's decisions rest on."""

from __future__ import annotations

import numpy as np
import pytest

from trackers import ByteTrackSettings
from trackers.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.matching import iou_matrix, linear_assignment


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ([0.0, 0.0, 10.0, 10.0], 1.0),  # identical
        ([20.0, 0.0, 30.0, 10.0], 0.0),  # disjoint
        ([5.0, 0.0, 15.0, 10.0], 1.0 / 3.0),  # half of each overlaps
        ([0.0, 0.0, 5.0, 5.0], 0.25),  # contained quarter
        ([3.0, 3.0, 3.0, 8.0], 0.0),  # zero width overlaps nothing
    ],
)
def test_iou_of_known_boxes(other: list[float], expected: float) -> None:
    reference = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert iou_matrix(reference, np.array([other]))[0, 0] == pytest.approx(expected)


def test_assignment_is_globally_optimal_and_gated() -> None:
    cost = np.array([
        [0.1, 0.2, 0.9],
        [0.15, 0.9, 0.9],
        [0.9, 0.9, 0.95],
    ])
    result = linear_assignment(cost, max_cost=0.8)
    # Greedy would give row 0 column 0 and leave row 1 out; the optimum pairs 0-1 and 1-0.
    assert dict(zip(result.rows.tolist(), result.columns.tolist(), strict=True)) == {0: 1, 1: 0}
    assert result.unmatched_rows.tolist() == [2]  # everything it could take costs too much
    assert result.unmatched_columns.tolist() == [2]


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_assignment_with_nothing_to_match(shape: tuple[int, int]) -> None:
    result = linear_assignment(np.zeros(shape), max_cost=0.8)
    assert result.rows.size == 0
    assert result.unmatched_rows.tolist() == list(range(shape[0]))
    assert result.unmatched_columns.tolist() == list(range(shape[1]))


def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 1.0, 3.0]])
    np.testing.assert_allclose(xyxy_to_xyah(boxes)[0], [30.0, 70.0, 0.4, 100.0])
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(boxes)), boxes)


@pytest.mark.parametrize("velocity", [(4.0, 0.0), (-3.0, 2.0), (0.0, 0.0)])
def test_kalman_learns_constant_velocity(velocity: tuple[float, float]) -> None:
    kalman = KalmanFilterXYAH(ByteTrackSettings())
    step = np.array([*velocity, *velocity])

    def box_at(frame: int) -> np.ndarray:
        return np.array([[100.0, 200.0, 140.0, 300.0]]) + frame * step

    means, covariances = kalman.initiate(xyxy_to_xyah(box_at(0)))
    for frame in range(1, 30):
        means, covariances = kalman.predict(means, covariances)
        means, covariances = kalman.update(means, covariances, xyxy_to_xyah(box_at(frame)))
    predicted, _ = kalman.predict(means, covariances)
    np.testing.assert_allclose(xyah_to_xyxy(predicted), box_at(30), atol=0.5)
    np.testing.assert_allclose(predicted[0, 4:6], velocity, atol=0.1)
