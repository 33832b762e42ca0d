"""What travels through the pipeline: a decoded frame, and what the pipeline concluded about it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.core.detections import Detections
from streamer.core.events import Event, new_id


@dataclass(slots=True)
class StageTimer:
    """Seconds spent per stage for one frame; stages are recorded in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@dataclass(slots=True)
class Frame:
    """One decoded frame; `captured_monotonic` anchors capture-to-result latency."""

    camera: str
    index: int
    capture_ts: float  # wall clock (UNIX seconds) when the frame left the decoder
    captured_monotonic: float
    image: np.ndarray  # BGR, HxWx3, uint8
    timings: StageTimer = field(default_factory=StageTimer)
    # Stage-owned extras prepared off the event loop (e.g. the detector's letterboxed input).
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

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
