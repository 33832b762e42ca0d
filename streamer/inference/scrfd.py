"""SCRFD face detection decoding: scores, boxes and five landmarks per stride, back in frame pixels.

The decoder finds its tensors by shape, not by name: SCRFD exports name them differently
(`out0..out8` in scrfd_500m_kps, numbers in the InsightFace packs), but every export has, per stride,
scores [A, 1], box distances [A, 4] and keypoint offsets [A, 10] with A = 2 * (H/s) * (W/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.core.detections import Detections
from streamer.core.imaging import nms

SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS_PER_LOCATION = 2
SCRFD_PAD_VALUE = 0  # SCRFD pastes the resized image on a zero canvas
LANDMARK_POINTS = 5
SCORE_COLUMNS = 1
BOX_COLUMNS = 4
LANDMARK_COLUMNS = 2 * LANDMARK_POINTS
LANDMARKS_KEY = "landmarks"  # Detections.data key: (N, 10) x0, y0, ..., x4, y4 in frame pixels


@dataclass(frozen=True)
class ScrfdSettings:
    """Thresholds of the face detector (filled from the `faces` configuration)."""

    score_threshold: float = 0.5  # scores are already sigmoid outputs
    nms_iou_threshold: float = 0.4  # the value SCRFD was evaluated with
    max_faces: int = 100


def _rows(array: np.ndarray) -> np.ndarray:
    """[A, k] from [A, k] or a leftover batch of one [1, A, k]."""
    return array[0] if array.ndim == 3 else array


class ScrfdDecoder:
    """Decodes one image's SCRFD outputs for a fixed network input size."""

    def __init__(self, input_height: int, input_width: int, strides: tuple[int, ...] = SCRFD_STRIDES):
        self.input_height = input_height
        self.input_width = input_width
        self.strides = strides
        self._centres: dict[int, np.ndarray] = {}
        for stride in strides:
            rows, cols = input_height // stride, input_width // stride
            ys, xs = np.mgrid[:rows, :cols]
            centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            self._centres[stride] = np.repeat(centres, SCRFD_ANCHORS_PER_LOCATION, axis=0)

    def anchors(self, stride: int) -> int:
        return len(self._centres[stride])

    def group_outputs(
        self, outputs: list[np.ndarray]
    ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """stride -> (scores, distances, offsets), matched by column count and row count."""
        by_rows: dict[int, dict[int, np.ndarray]] = {}
        for array in outputs:
            rows = _rows(array)
            if rows.ndim != 2:
                raise ValueError(f"SCRFD output of shape {array.shape}: expected [A, k]")
            by_rows.setdefault(rows.shape[0], {})[rows.shape[1]] = rows
        grouped = {}
        for stride in self.strides:
            found = by_rows.get(self.anchors(stride), {})
            try:
                grouped[stride] = (
                    found[SCORE_COLUMNS], found[BOX_COLUMNS], found[LANDMARK_COLUMNS]
                )
            except KeyError:
                shapes = sorted(tuple(a.shape) for a in outputs)
                raise ValueError(
                    f"SCRFD outputs {shapes} do not match a {self.input_height}x{self.input_width} "
                    f"input: expected scores/boxes/landmarks with {self.anchors(stride)} rows for "
                    f"stride {stride}; check the model's input size in config.pbtxt"
                ) from None
        return grouped

    def decode(
        self,
        outputs: list[np.ndarray],
        ratio: float,
        settings: ScrfdSettings,
        offset: tuple[float, float] = (0.0, 0.0),
    ) -> Detections:
        """Faces in source pixels: divide by the letterbox `ratio`, then add the crop `offset`."""
        boxes, scores, landmarks = [], [], []
        for stride, (score, distance, offset_kps) in self.group_outputs(outputs).items():
            keep = score[:, 0] >= settings.score_threshold
            if not keep.any():
                continue
            centres = self._centres[stride][keep]
            distance = distance[keep] * stride
            boxes.append(
                np.concatenate([centres - distance[:, :2], centres + distance[:, 2:]], axis=1)
            )
            points = offset_kps[keep].reshape(-1, LANDMARK_POINTS, 2) * stride + centres[:, None, :]
            landmarks.append(points.reshape(-1, LANDMARK_COLUMNS))
            scores.append(score[keep, 0])
        if not boxes:
            return empty_faces()
        xyxy = np.concatenate(boxes)
        confidence = np.concatenate(scores)
        kept = nms(xyxy, confidence, settings.nms_iou_threshold, settings.max_faces)
        shift = np.tile(np.asarray(offset, np.float32), LANDMARK_POINTS)
        return Detections(
            xyxy=(xyxy[kept] / ratio + shift[:4]).astype(np.float32),
            confidence=confidence[kept].astype(np.float32),
            class_id=np.zeros(len(kept), np.int64),
            data={LANDMARKS_KEY: (np.concatenate(landmarks)[kept] / ratio + shift).astype(np.float32)},
        )


def empty_faces() -> Detections:
    return Detections(
        xyxy=np.zeros((0, 4), np.float32),
        confidence=np.zeros((0,), np.float32),
        class_id=np.zeros((0,), np.int64),
        data={LANDMARKS_KEY: np.zeros((0, LANDMARK_COLUMNS), np.float32)},
    )
