"""Image operations shared by the detectors and embedders: letterbox, NMS, box clipping."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_CROP_PX = 2  # a box with less than this inside the image has nothing to crop


@dataclass(frozen=True)
class Letterboxed:
    image: np.ndarray  # uint8 HxWx3 canvas the model expects
    ratio: float  # model pixels per frame pixel


def letterbox(image: np.ndarray, height: int, width: int, pad_value: int) -> Letterboxed:
    """Resize keeping aspect and paste at the top-left of a padded canvas (YOLOX, SCRFD)."""
    ratio = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = int(image.shape[0] * ratio), int(image.shape[1] * ratio)
    canvas = np.full((height, width, 3), pad_value, np.uint8)
    cv2.resize(image, (new_w, new_h), dst=canvas[:new_h, :new_w], interpolation=cv2.INTER_LINEAR)
    return Letterboxed(canvas, ratio)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Indices kept by non-maximum suppression, best first."""
    if len(xyxy) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou_threshold, top_k=limit)
    return np.asarray(kept, np.int64).reshape(-1)


def clip_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer pixel bounds of `box` inside the image, or None when too little of it is inside."""
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if right - left < MIN_CROP_PX or bottom - top < MIN_CROP_PX:
        return None
    return left, top, right, bottom
