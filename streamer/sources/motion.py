"""Motion-gated detection: a cheap motion detector in the camera's thread decides which frames
the person detector sees.

A surveillance camera looks at an empty scene most of the day; detecting every frame of it spends
the detector on nothing. The detector here works on a small grey copy of the frame, taken from
the decoded luma plane when there is one (bilinear resize, then a blur: about 0.1 ms for 768x576;
the full-size colour picture is not made for it): a running-average background, the absolute
difference to it, a threshold, a dilation that joins the pieces of one mover, and the areas of
the outer contours; masked polygons never count. Motion over most of the picture at once is a
lighting change (lights switched, the camera's day/night switch): the background restarts from
that frame. The ideas follow Frigate's motion detector (resized grey frame, running average,
contour area, a lightning threshold); the code is this project's own.

`MotionGate` adds the keep-alive: without motion one frame per `keepalive_s` is still detected
while the camera has tracks open, so people standing still keep them; an empty scene is looked at
once per `idle_keepalive_s` only (whoever enters moves). The camera loop tells the gate whether
tracks are open (`set_tracking`, a plain attribute: written on the event loop, read in the
camera's thread). Its verdict travels with the frame
(`frame.prepared[MOTION_KEY]`); the camera loop publishes a gated frame with the last tracks
carried over, and the tracker counts the time that passed from frame indices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config import MotionConfig
from streamer.config.motion import in_pixels
from streamer.core.frames import Frame
from streamer.core.stats import CameraStats

MOTION_KEY = "motion"
BLUR_KERNEL = (5, 5)
DILATE_KERNEL = np.ones((3, 3), np.uint8)
DILATE_ITERATIONS = 2
LUMA_BLACK = 16  # limited-range luma: 16 is black, 235 white
LUMA_SCALE = 255 / 219


@dataclass(frozen=True, slots=True)
class MotionVerdict:
    """What the gate decided for one frame."""

    detect: bool  # the frame goes to the detector (motion, keep-alive, or the first frame)
    motion: bool  # motion was found in it
    area: float  # moving share of the unmasked picture, 0..1


class MotionDetector:
    """Motion in a stream of BGR frames of one camera; not thread-safe (one camera's thread)."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None  # float32, small grey
        self._size: tuple[int, int] | None = None  # (width, height) of the decoded frames
        self._small: tuple[int, int] = (0, 0)  # (width, height) of the grey frame
        self._keep: np.ndarray | None = None  # uint8 0/255, 0 where masked
        self._pixels = 1

    def _setup(self, width: int, height: int) -> None:
        small_h = min(self.config.frame_height, height)
        small_w = max(1, round(width * small_h / height))
        self._size, self._small = (width, height), (small_w, small_h)
        keep = np.full((small_h, small_w), 255, np.uint8)
        for polygon in self.config.masks:
            points = np.array(
                [(x * small_w / width, y * small_h / height) for x, y in in_pixels(polygon, width, height)],
                np.float32,
            )
            cv2.fillPoly(keep, [np.round(points).astype(np.int32)], (0,))
        self._keep = keep
        self._pixels = max(1, int(np.count_nonzero(keep)))
        self._background = None

    def background_image(self) -> np.ndarray:
        """The background as a grey image (for inspection and tests)."""
        if self._background is None:
            raise RuntimeError("no frame measured yet")
        return cv2.convertScaleAbs(self._background)

    def grey(self, image: np.ndarray, *, limited_range: bool = False) -> np.ndarray:
        """The small, blurred grey frame motion is measured on.

        `image` is BGR, or a grey plane; `limited_range`: a decoded luma plane (Y of BT.601
        yuv420p, 16-235), stretched to the 0-255 grey that BGR gives, so thresholds mean the same.
        """
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._setup(width, height)
        small = cv2.resize(image, self._small, interpolation=cv2.INTER_LINEAR)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        elif limited_range:
            small = cv2.convertScaleAbs(small, alpha=LUMA_SCALE, beta=-LUMA_BLACK * LUMA_SCALE)
        return cv2.GaussianBlur(small, BLUR_KERNEL, 0)

    def measure(self, image: np.ndarray, *, limited_range: bool = False) -> float:
        """The moving share of the unmasked picture (0 when nothing moves); updates the background.

        The first frame (and the first after a change of size) only sets the background: 0.
        """
        grey = self.grey(image, limited_range=limited_range)
        assert self._keep is not None
        if self._background is None:
            self._background = grey.astype(np.float32)
            return 0.0
        delta = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, moving = cv2.threshold(delta, self.config.threshold, 255, cv2.THRESH_BINARY)
        moving = cv2.bitwise_and(moving, self._keep)
        if not moving.any():
            cv2.accumulateWeighted(grey, self._background, self.config.background_alpha)
            return 0.0
        moving = cv2.dilate(moving, DILATE_KERNEL, iterations=DILATE_ITERATIONS)
        moving = cv2.bitwise_and(moving, self._keep)
        contours, _ = cv2.findContours(moving, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        smallest = self.config.min_area * self._pixels
        area = sum(a for a in (cv2.contourArea(c) for c in contours) if a >= smallest and a > 0)
        share = min(1.0, area / self._pixels)
        if share > self.config.lighting_change:
            self._background = grey.astype(np.float32)  # a new picture: learn it at once
        else:
            cv2.accumulateWeighted(grey, self._background, self.config.background_alpha)
        return float(share)


class MotionGate:
    """Decides, in the camera's thread, which frames need the detector; writes the camera's
    motion counters (`motion_frames`, `motion_area`).

    Keep-alive time is video time where the stream's rate is known (frame indices over
    `source_fps`), so a file played fast is gated as it would be live; otherwise wall time.
    """

    def __init__(self, config: MotionConfig, stats: CameraStats) -> None:
        self.config = config
        self.stats = stats
        self.detector = MotionDetector(config)
        self._last_detected: tuple[int, float] | None = None  # frame index, monotonic time
        self.tracking = True  # tracks open on the camera; until told, assume so (the safe side)

    def set_tracking(self, open_tracks: bool) -> None:
        self.tracking = open_tracks

    def _since_detected_s(self, frame: Frame) -> float:
        if self._last_detected is None:
            return float("inf")
        index, monotonic = self._last_detected
        rate = self.stats.source_fps
        if rate and frame.index > index:
            return (frame.index - index) / rate
        return frame.captured_monotonic - monotonic

    def inspect(self, frame: Frame) -> MotionVerdict:
        started = time.perf_counter()
        # The decoded luma plane when the full-size colour picture is not made anyway: no
        # conversion of the whole frame for a verdict taken on a small grey copy.
        if frame.yuv420 is not None and not frame.has_image:
            area = self.detector.measure(frame.yuv420[0], limited_range=True)
        else:
            area = self.detector.measure(frame.image)
        motion = area > 0.0
        keepalive_s = self.config.keepalive_s if self.tracking else self.config.idle_keepalive_s
        detect = motion or self._since_detected_s(frame) >= keepalive_s - 1e-6
        if detect:
            self._last_detected = (frame.index, frame.captured_monotonic)
        verdict = MotionVerdict(detect=detect, motion=motion, area=area)
        frame.prepared[MOTION_KEY] = verdict
        self.stats.motion_area = area
        if motion:
            self.stats.motion_frames += 1
        frame.timings.add("motion", time.perf_counter() - started)
        return verdict


def needs_detection(frame: Frame) -> bool:
    """False only for a frame the motion gate left out."""
    verdict = frame.prepared.get(MOTION_KEY)
    return verdict is None or bool(verdict.detect)


def gated_prepare(
    gate: MotionGate, prepare: Callable[[Frame], None] | None
) -> Callable[[Frame], None]:
    """The camera thread's per-frame hook with the gate in front: a gated frame is not
    prepared for the detector (no letterbox), which is most of the saving after inference."""

    def hook(frame: Frame) -> None:
        if gate.inspect(frame).detect and prepare is not None:
            prepare(frame)

    return hook
