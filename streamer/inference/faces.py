"""Faces: SCRFD detection through Triton, 5-point alignment to the ArcFace template, embedding.

The same classes serve the frame path (streamer/identities/stage.py) and enrolment
(`streamer faces enroll`), so an enrolled face and a face seen by a camera are processed alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamer.core.detections import Detections
from streamer.core.imaging import letterbox
from streamer.inference.client import InferTiming, ModelSpec, TritonModel
from streamer.inference.embedding import EmbeddingModel, image_input
from streamer.inference.scrfd import (
    LANDMARK_POINTS,
    SCRFD_PAD_VALUE,
    ScrfdDecoder,
    ScrfdSettings,
)

# The standard ArcFace landmark positions in a 112x112 crop: left eye, right eye, nose tip,
# left and right mouth corners (InsightFace `arcface_dst`).
ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) mapping source onto target.

    Umeyama's closed form, as InsightFace's `estimate_norm`: deterministic, unlike RANSAC.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[1, 1] = -1.0
    rotation = u @ reflection @ vt
    variance = source_centred.var(axis=0).sum()
    scale = float((singular * np.diag(reflection)).sum() / variance)
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]]).astype(np.float32)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The face warped so its five landmarks sit on the ArcFace template (scaled to `size`)."""
    points = np.asarray(landmarks, np.float32).reshape(LANDMARK_POINTS, 2)
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix = similarity_transform(points, template)
    aligned: np.ndarray = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )
    return aligned


@dataclass(frozen=True)
class FaceDetection:
    """Faces of one image (or region) and what the request cost."""

    faces: Detections
    timing: InferTiming


class FaceDetector:
    """`detect(image) -> faces` with boxes and landmarks in the image's pixels."""

    def __init__(self, model: TritonModel, settings: ScrfdSettings) -> None:
        self.model = model
        self.settings = settings
        self._input = ""
        self._outputs: list[str] = []
        self._decoder: ScrfdDecoder | None = None

    def configure(self, spec: ModelSpec) -> None:
        self._input, height, width = image_input(spec)
        self._outputs = [o.name for o in spec.outputs]
        self._decoder = ScrfdDecoder(height, width)
        if all(d > 0 for o in spec.outputs for d in o.shape):  # a mismatch is refused at start
            self._decoder.group_outputs([np.zeros(o.shape, np.float32) for o in spec.outputs])

    async def detect(
        self, image: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)
    ) -> FaceDetection:
        """Faces in `image` (a frame or a region of it whose top-left is at `offset`)."""
        assert self._decoder is not None, "configure() first"
        boxed = letterbox(
            image, self._decoder.input_height, self._decoder.input_width, SCRFD_PAD_VALUE
        )
        outputs, timing = await self.model.infer({self._input: boxed.image})
        faces = self._decoder.decode(
            [outputs[name] for name in self._outputs], boxed.ratio, self.settings, offset
        )
        return FaceDetection(faces, timing)


class FaceEmbedder(EmbeddingModel):
    """ArcFace-family embedder: aligned crop in, unit vector out."""

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        if self.height != self.width:
            raise ValueError(f"face embedder input must be square, got {self.height}x{self.width}")
        return align_face(image, landmarks, self.height)
