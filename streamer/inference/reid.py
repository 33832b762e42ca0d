"""Person re-identification: the tracked person's box, cropped and stretched to the model's input.

ReID models are trained on crops stretched to a fixed size (OSNet and Intel's 0288: 128 wide,
256 high), not letterboxed, so the crop is resized without keeping the aspect ratio. Pixel
conventions (RGB + ImageNet for OSNet, raw BGR NHWC for 0288) live in the prepared graph.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamer.core.imaging import clip_box
from streamer.inference.embedding import EmbeddingModel


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
