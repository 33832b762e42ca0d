"""Batched constant-velocity Kalman filter over (centre x, centre y, aspect, height).

The model is ByteTrack's (from DeepSORT): noise scales with box height, so near and far
pedestrians are tracked with the same relative confidence. Every method works on stacks of
tracks at once: means (K, 8), covariances (K, 8, 8), measurements (K, 4).

The update never calls LAPACK: OpenBLAS left to its default thread count wakes its worker threads
for every tiny 4x4 `np.linalg.solve`, and they spin around it, doubling an update's cost
(`python -m studies.kalman` measures it both ways). See `solve_spd`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trackers.settings import ByteTrackSettings

FloatArray = npt.NDArray[np.float64]

_MEASURED = 4  # cx, cy, aspect, height; the state appends their velocities
_ASPECT = 2
_HEIGHT = 3


def xyxy_to_xyah(xyxy: FloatArray) -> FloatArray:
    """Corner boxes (K, 4) to the filter's measurement space (K, 4)."""
    width = xyxy[:, 2] - xyxy[:, 0]
    height = xyxy[:, 3] - xyxy[:, 1]
    centre_x = (xyxy[:, 0] + xyxy[:, 2]) / 2
    centre_y = (xyxy[:, 1] + xyxy[:, 3]) / 2
    return np.stack([centre_x, centre_y, width / height, height], axis=1)


def xyah_to_xyxy(xyah: FloatArray) -> FloatArray:
    """The first four state components (K, >=4) back to corner boxes (K, 4)."""
    height = xyah[:, _HEIGHT]
    half_width = xyah[:, _ASPECT] * height / 2
    half_height = height / 2
    return np.stack(
        [xyah[:, 0] - half_width, xyah[:, 1] - half_height,
         xyah[:, 0] + half_width, xyah[:, 1] + half_height],
        axis=1,
    )


class KalmanFilterXYAH:
    """Predicts and corrects box states; holds only the fixed model matrices."""

    def __init__(self, settings: ByteTrackSettings) -> None:
        self._settings = settings
        self._motion = np.eye(2 * _MEASURED)
        self._motion[:_MEASURED, _MEASURED:] = np.eye(_MEASURED)  # position += velocity

    def _stds(self, heights: FloatArray, weight: float, aspect_std: float) -> FloatArray:
        """Per-track standard deviations (K, 4): proportional to height, fixed for aspect."""
        stds = np.repeat((weight * heights)[:, None], _MEASURED, axis=1)
        stds[:, _ASPECT] = aspect_std
        return stds

    def _process_noise(self, heights: FloatArray, position_factor: float = 1.0,
                       velocity_factor: float = 1.0) -> FloatArray:
        s = self._settings
        position = self._stds(heights, position_factor * s.std_weight_position,
                              s.std_aspect_position)
        velocity = self._stds(heights, velocity_factor * s.std_weight_velocity,
                              s.std_aspect_velocity)
        return _diagonal(np.square(np.concatenate([position, velocity], axis=1)))

    def initiate(self, measurements: FloatArray) -> tuple[FloatArray, FloatArray]:
        """New states at the measured boxes with zero velocity and wide uncertainty."""
        means = np.concatenate([measurements, np.zeros_like(measurements)], axis=1)
        s = self._settings
        covariances = self._process_noise(
            measurements[:, _HEIGHT], s.initial_position_std_factor, s.initial_velocity_std_factor
        )
        return means, covariances

    def predict(self, means: FloatArray, covariances: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance every state one frame."""
        noise = self._process_noise(means[:, _HEIGHT])
        predicted_means = means @ self._motion.T
        predicted_covariances = self._motion @ covariances @ self._motion.T + noise
        return predicted_means, predicted_covariances

    def update(
        self, means: FloatArray, covariances: FloatArray, measurements: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Correct each state with its matched measurement."""
        s = self._settings
        measurement_noise = _diagonal(
            self._stds(means[:, _HEIGHT], s.std_weight_position, s.std_aspect_measurement) ** 2
        )
        innovation_cov = covariances[:, :_MEASURED, :_MEASURED] + measurement_noise
        # gain = P Hᵀ S⁻¹; P and S are symmetric, so solve S X = H P and transpose.
        gain = solve_spd(innovation_cov, covariances[:, :_MEASURED, :]).transpose(0, 2, 1)
        innovation = measurements - means[:, :_MEASURED]
        new_means = means + (gain @ innovation[:, :, None])[:, :, 0]
        new_covariances = covariances - gain @ innovation_cov @ gain.transpose(0, 2, 1)
        return new_means, new_covariances


def solve_spd(matrices: FloatArray, rhs: FloatArray) -> FloatArray:
    """X with S X = B for a stack of small symmetric positive-definite S (K, n, n), B (K, n, m).

    Plain numpy arithmetic, no BLAS or LAPACK call, so no thread pool is woken whatever the
    environment. This filter's innovation covariances are diagonal (every model matrix acts on
    each measured component and its velocity alone, and `initiate` starts diagonal), so the usual
    case is one division; any other S is solved by Gauss-Jordan elimination, which needs no
    pivoting on a positive-definite matrix. Both agree with `np.linalg.solve` to rounding.
    """
    count, size = matrices.shape[0], matrices.shape[-1]
    # Row-major, the entries between two diagonal ones are the n off-diagonal ones in each run of
    # n + 1 after the first: a view (no mask to build), the cheapest exact test measured.
    off_diagonal = matrices.reshape(count, size * size)[:, 1:].reshape(count, size - 1, size + 1)
    if not off_diagonal[:, :, :size].any():
        return rhs / np.diagonal(matrices, axis1=1, axis2=2)[:, :, None]
    augmented = np.concatenate([matrices, rhs], axis=2)
    for j in range(size):
        pivot_row = augmented[:, j, :] / augmented[:, j, j, None]
        augmented -= augmented[:, :, j, None] * pivot_row[:, None, :]  # clears column j, row j too
        augmented[:, j, :] = pivot_row
    return augmented[:, :, size:]


def _diagonal(values: FloatArray) -> FloatArray:
    """Stack of diagonal matrices (K, n, n) from rows of diagonal entries (K, n)."""
    return values[:, :, None] * np.eye(values.shape[1])[None, :, :]
