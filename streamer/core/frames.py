"""What travels through the pipeline: a decoded frame, and what the pipeline concluded about it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.core.detections import Detections
from streamer.core.events import Event, new_id


@dataclass(slots=True)
class StageTimer:
    """Seconds spent per stage for one frame; stages are recorded in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the thread, where measured

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def add_cpu(self, stage: str, seconds: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds


class Frame:
    """One decoded frame; `captured_monotonic` anchors capture-to-result latency.

    The full-size BGR `image` may be made on first use (`convert`): most frames only need the
    detector's small input, which the source can make straight from the decoded YUV planes
    (`yuv420`), so the full-size colour conversion is skipped unless a stage or the dashboard
    asks for the picture. Sources convert in their own thread when they know it will be wanted.
    """

    __slots__ = (
        "_convert",
        "_image",
        "_size",
        "camera",
        "capture_ts",
        "captured_monotonic",
        "index",
        "prepared",
        "timings",
        "yuv420",
    )

    def __init__(
        self,
        camera: str,
        index: int,
        capture_ts: float,  # wall clock (UNIX seconds) when the frame left the decoder
        captured_monotonic: float,
        image: np.ndarray | None = None,  # BGR, HxWx3, uint8
        timings: StageTimer | None = None,
        prepared: dict[str, Any] | None = None,
        *,
        convert: Callable[[], np.ndarray] | None = None,
        size: tuple[int, int] | None = None,  # (width, height) when the image is made later
        yuv420: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if image is None and (convert is None or size is None):
            raise ValueError("a Frame needs its image, or a convert function and its size")
        self.camera = camera
        self.index = index
        self.capture_ts = capture_ts
        self.captured_monotonic = captured_monotonic
        self.timings = timings if timings is not None else StageTimer()
        # Stage-owned extras prepared off the event loop (e.g. the detector's letterboxed input).
        self.prepared: dict[str, Any] = prepared if prepared is not None else {}
        # Y, U, V planes (limited-range BT.601 yuv420p) of the decoded picture, when the source has them.
        self.yuv420 = yuv420
        self._image = image
        self._convert = convert
        self._size = size if image is None else (int(image.shape[1]), int(image.shape[0]))

    @property
    def image(self) -> np.ndarray:
        """BGR, HxWx3, uint8: converted from the decoded picture on first use."""
        if self._image is None:
            assert self._convert is not None
            self._image, self._convert = self._convert(), None
        return self._image

    @image.setter
    def image(self, image: np.ndarray) -> None:
        self._image, self._convert = image, None
        self._size = (int(image.shape[1]), int(image.shape[0]))

    @property
    def has_image(self) -> bool:
        """Whether the full-size image is already made (reading `image` would cost nothing)."""
        return self._image is not None

    @property
    def height(self) -> int:
        assert self._size is not None
        return self._size[1]

    @property
    def width(self) -> int:
        assert self._size is not None
        return self._size[0]

    def age_s(self) -> float:
        return time.monotonic() - self.captured_monotonic


@dataclass(slots=True)
class FrameResult:
    """Everything the pipeline concluded about one frame; the unit every sink publishes."""

    camera: str
    frame_index: int
    capture_ts: float
    width: int
    height: int
    tracks: Detections
    latency_s: float
    timings: dict[str, float]
    faces: Detections | None = None
    events: list[Event] = field(default_factory=list)
    image: np.ndarray | None = None  # kept only when a consumer (dashboard snapshot) asked for it
    id: str = field(default_factory=new_id)  # the frame message's id, the same in every sink
    # False: the motion gate left the frame out of detection; `tracks` are the last ones, carried
    detected: bool = True
