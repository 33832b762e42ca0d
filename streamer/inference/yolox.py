"""YOLOX person detection: letterbox in, boxes in frame pixels out (ByteTrack's detector family)."""

from __future__ import annotations

import numpy as np

from streamer.core.detections import Detections
from streamer.core.imaging import nms

YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD_VALUE = 114
BOX_COLUMNS = 4
OBJECTNESS_COLUMN = 4
FIRST_CLASS_COLUMN = 5


class YoloxDecoder:
    """Grid decoding for YOLOX heads exported without in-graph decoding."""

    def __init__(self, input_height: int, input_width: int, strides: tuple[int, ...] = YOLOX_STRIDES):
        grids, expanded = [], []
        for stride in strides:
            rows, cols = input_height // stride, input_width // stride
            ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
            expanded.append(np.full((rows * cols, 1), stride))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.strides = np.concatenate(expanded).astype(np.float32)

    def decode(
        self,
        output: np.ndarray,
        ratio: float,
        *,
        class_ids: list[int],
        score_threshold: float,
        nms_iou_threshold: float,
        max_detections: int,
    ) -> Detections:
        if output.shape[0] != len(self.grid):
            raise ValueError(
                f"detector output has {output.shape[0]} anchors, expected {len(self.grid)} "
                "for its input size: check the model's config.pbtxt dims"
            )
        class_scores = output[:, FIRST_CLASS_COLUMN:][:, class_ids]
        scores_per_class = output[:, OBJECTNESS_COLUMN : OBJECTNESS_COLUMN + 1] * class_scores
        best = scores_per_class.argmax(axis=1)
        scores = scores_per_class[np.arange(len(best)), best]
        keep = scores >= score_threshold
        if not keep.any():
            return Detections.empty()
        raw = output[keep, :BOX_COLUMNS]
        stride = self.strides[keep]
        centre = (raw[:, :2] + self.grid[keep]) * stride
        size = np.exp(raw[:, 2:4]) * stride
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / ratio
        scores = scores[keep]
        labels = np.asarray(class_ids, np.int64)[best[keep]]
        kept = nms(xyxy, scores, nms_iou_threshold, max_detections)
        return Detections(
            xyxy=xyxy[kept].astype(np.float32),
            confidence=scores[kept].astype(np.float32),
            class_id=labels[kept],
        )
