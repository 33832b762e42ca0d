"""The Kalman update's own small solve gives what `np.linalg.solve` (LAPACK) gives, to rounding.

The tracker solves its 4x4 innovation covariances without BLAS or LAPACK (OpenBLAS's threads spin
around tiny solves; see trackers/kalman.py). These tests hold the result to the LAPACK one within
1e-9 relative: on random matrices, on the filter's own states, and along whole MOT17 sequences,
where the tracker's decisions must also be the same as with the LAPACK solve.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trackers.kalman as kalman_module
from tests.trackers.test_bytetrack_mot17 import SEQUENCES, frame_rate, load_pedestrians, sequence_dir
from trackers import ByteTrack, ByteTrackSettings
from trackers.kalman import KalmanFilterXYAH, solve_spd, xyxy_to_xyah

RTOL = 1e-9


def lapack_update(
    kalman: KalmanFilterXYAH, means: np.ndarray, covariances: np.ndarray, measurements: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The update as it was written before, with `np.linalg.solve`."""
    original = kalman_module.solve_spd
    kalman_module.solve_spd = np.linalg.solve  # type: ignore[assignment]
    try:
        return KalmanFilterXYAH.update(kalman, means, covariances, measurements)
    finally:
        kalman_module.solve_spd = original


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Relative to each matrix's largest entry: entries that cancel to ~0 carry absolute error."""
    scale = np.abs(expected).reshape(len(expected), -1).max(axis=1)
    tolerance = RTOL * scale.reshape((-1,) + (1,) * (expected.ndim - 1))
    assert np.all(np.abs(actual - expected) <= tolerance), np.max(np.abs(actual - expected))


@pytest.mark.parametrize("count", [1, 5, 40])
def test_full_positive_definite_stacks_match_lapack(count: int) -> None:
    rng = np.random.default_rng(count)
    factors = rng.normal(size=(count, 4, 4))
    matrices = factors @ factors.transpose(0, 2, 1) + 0.5 * np.eye(4)
    rhs = rng.normal(size=(count, 4, 8))
    assert_close(solve_spd(matrices, rhs), np.linalg.solve(matrices, rhs))


def test_diagonal_stacks_match_lapack() -> None:
    rng = np.random.default_rng(1)
    matrices = rng.uniform(0.01, 1e4, size=(7, 4))[:, :, None] * np.eye(4)
    rhs = rng.normal(size=(7, 4, 8)) * 100
    assert_close(solve_spd(matrices, rhs), np.linalg.solve(matrices, rhs))


@pytest.mark.parametrize(("row", "column"), list(itertools.combinations(range(4), 2)))
def test_every_off_diagonal_entry_is_taken_into_account(row: int, column: int) -> None:
    matrices = np.tile(np.diag([2.0, 3.0, 5.0, 7.0]), (3, 1, 1))
    matrices[1, row, column] = matrices[1, column, row] = 0.5
    rhs = np.arange(3 * 4 * 8, dtype=np.float64).reshape(3, 4, 8)
    assert_close(solve_spd(matrices, rhs), np.linalg.solve(matrices, rhs))


def test_empty_stack() -> None:
    assert solve_spd(np.empty((0, 4, 4)), np.empty((0, 4, 8))).shape == (0, 4, 8)


def test_filter_updates_match_lapack_with_general_covariances() -> None:
    """Covariances the filter never produces itself (correlated components): elimination path."""
    kalman = KalmanFilterXYAH(ByteTrackSettings())
    rng = np.random.default_rng(2)
    boxes = np.array([[100.0, 50.0, 140.0, 170.0], [300.0, 10.0, 330.0, 90.0]])
    means, covariances = kalman.initiate(xyxy_to_xyah(boxes))
    mix = np.eye(8) + 0.1 * rng.normal(size=(8, 8))
    covariances = mix @ covariances @ mix.T
    measurements = means[:, :4] + rng.normal(size=(2, 4))
    expected = lapack_update(kalman, means, covariances, measurements)
    for actual, wanted in zip(kalman.update(means, covariances, measurements), expected, strict=True):
        assert_close(actual, wanted)


class Recorder:
    """Wraps a filter's update: checks each call against the LAPACK one and counts them."""

    def __init__(self, kalman: KalmanFilterXYAH) -> None:
        self.kalman = kalman
        self.update = kalman.update
        self.calls = 0

    def __call__(self, means: np.ndarray, covariances: np.ndarray, measurements: np.ndarray) -> Any:
        result = self.update(means, covariances, measurements)
        expected = lapack_update(self.kalman, means, covariances, measurements)
        for actual, wanted in zip(result, expected, strict=True):
            assert_close(actual, wanted)
        self.calls += 1
        return result


def run_sequence(assets: Path, name: str, check: bool) -> tuple[list[tuple[Any, ...]], int]:
    path = sequence_dir(assets, name)
    frames = load_pedestrians(path)
    tracker = ByteTrack(ByteTrackSettings(frame_rate=frame_rate(path)))
    recorder = Recorder(tracker._kalman)
    if check:
        tracker._kalman.update = recorder  # type: ignore[method-assign]
    outputs = []
    for number in sorted(frames):
        _gt_ids, boxes, scores = frames[number]
        out = tracker.update(boxes, scores)
        outputs.append((out.tracker_id.tolist(), out.detection_index.tolist(), out.started_ids,
                        out.ended_ids, out.lost_ids, out.xyxy.astype(np.float64)))
    return outputs, recorder.calls


@pytest.mark.parametrize("name", SEQUENCES)
def test_mot17_tracks_are_the_same_as_with_lapack(
    assets: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked, calls = run_sequence(assets, name, check=True)  # every update within 1e-9 of LAPACK
    assert calls > 0
    monkeypatch.setattr(kalman_module, "solve_spd", np.linalg.solve)
    reference, _ = run_sequence(assets, name, check=False)
    assert len(checked) == len(reference)
    for frame, (ours, theirs) in enumerate(zip(checked, reference, strict=True)):
        assert ours[:5] == theirs[:5], f"frame {frame}: decisions differ"
        np.testing.assert_allclose(ours[5], theirs[5], rtol=1e-6, err_msg=f"frame {frame}")
