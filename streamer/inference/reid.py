"""Person re-identification: the tracked person's box, cropped and stretched to the model's input.

ReID models are trained on crops stretched to a fixed size (OSNet and Intel's 0288: 128 wide,
256 high), not letterboxed, so the crop is resized without keeping the aspect ratio. Pixel
conventions (RGB + ImageNet for OSNet, raw BGR NHWC for 0288) live in the prepared graph.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamer.inference.embedding import EmbeddingModel

MIN_CROP_PX = 2


def clip_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer pixel bounds of `box` inside the image, or None when too little of it is inside."""
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if right - left < MIN_CROP_PX or bottom - top < MIN_CROP_PX:
        return None
    return left, top, right, bottom


def crop_person(image: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The box's pixels resized to the model input (uint8 BGR), or None if it lies off the image."""
    bounds = clip_box(box, image.shape[1], image.shape[0])
    if bounds is None:
        return None
    left, top, right, bottom = bounds
    return cv2.resize(image[top:bottom, left:right], (width, height), interpolation=cv2.INTER_LINEAR)


class PersonEmbedder(EmbeddingModel):
    """Whole-body appearance embedding of a tracked person."""

    def crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        return crop_person(image, box, self.height, self.width)
