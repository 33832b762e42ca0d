"""A camera made of pasted pictures, run through the real tracker and the identities stage.

The detector is left out: detections are exactly where the pictures were pasted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config import StreamerConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame, FrameResult
from streamer.identities.stage import IdentityStage
from streamer.tracking.camera_tracker import CameraTracker
from tests.identities.synthetic import background

FRAME_INTERVAL_S = 0.1
DETECTION_SCORE = 0.9


@dataclass(frozen=True)
class Placed:
    """A picture pasted with its top-left at (x, y), scaled to `height` pixels."""

    picture: np.ndarray
    x: int
    y: int
    height: int


class PastedCamera:
    def __init__(
        self, name: str, stage: IdentityStage, config: StreamerConfig, width: int, height: int
    ) -> None:
        self.name = name
        self.stage = stage
        self.tracker = CameraTracker(name, config.tracker, 1 / FRAME_INTERVAL_S)
        self.wall = background(width, height, seed=len(name))
        self.index = 0
        self.ts = time.time()

    async def show(self, placed: list[Placed]) -> FrameResult:
        image = self.wall.copy()
        boxes = []
        for item in placed:
            width = round(item.picture.shape[1] * item.height / item.picture.shape[0])
            image[item.y : item.y + item.height, item.x : item.x + width] = cv2.resize(
                item.picture, (width, item.height), interpolation=cv2.INTER_AREA
            )
            boxes.append([item.x, item.y, item.x + width, item.y + item.height])
        self.index += 1
        self.ts += FRAME_INTERVAL_S
        frame = Frame(self.name, self.index, self.ts, time.monotonic(), image)
        detections = Detections(
            xyxy=np.array(boxes, np.float32).reshape(-1, 4),
            confidence=np.full(len(boxes), DETECTION_SCORE, np.float32),
            class_id=np.zeros(len(boxes), np.int64),
        )
        tracks, events = self.tracker.update(frame, detections)
        result = FrameResult(
            self.name, frame.index, frame.capture_ts, frame.width, frame.height, tracks, 0.0, {},
            events=events,
        )
        await self.stage.process(frame, result, self.tracker)
        return result
