"""Annotated JPEG snapshots per camera, kept only at a low rate and only while someone is watching.

The pipeline asks `wants_image(camera)` for every frame; saying yes costs only a reference to the
decoded image. Drawing and JPEG encoding happen on request, in a worker thread, once per image.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config import DashboardConfig
from streamer.core.detections import Detections
from streamer.core.frames import FrameResult

# Distinct, saturated colours (BGR) that stay readable on dark and bright footage.
TRACK_COLOURS_BGR = (
    (0, 200, 255), (255, 160, 0), (80, 220, 80), (255, 80, 200), (0, 120, 255),
    (220, 220, 0), (180, 110, 255), (60, 255, 200), (255, 255, 255), (120, 180, 255),
)
# Prefixes that say what a bare value is; a cross-camera identity reads "#12 g7".
LABEL_PREFIXES = {"global_id": "g"}
UNTRACKED_COLOUR_BGR = (160, 160, 160)
TEXT_COLOUR_BGR = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Lines and text scale with the image so labels stay legible on a scaled-down tile.
LINE_WIDTH_PER_PIXEL = 1 / 320
FONT_SCALE_PER_PIXEL = 1 / 1000


@dataclass
class _Kept:
    image: np.ndarray
    tracks: Detections
    frame_index: int
    capture_ts: float
    jpeg: bytes | None = None


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    frame_index: int
    capture_ts: float


def _label_value(value: object) -> str | None:
    """Text for a track data value, or None when the value means 'unknown'."""
    if value is None:
        return None
    if isinstance(value, float | np.floating) and math.isnan(float(value)):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def annotate(
    image: np.ndarray, tracks: Detections, label_fields: list[str], max_width: int
) -> np.ndarray:
    """A copy of the image (scaled to max_width) with boxes, track ids and names drawn on it."""
    height, width = image.shape[:2]
    scale = min(1.0, max_width / width)
    canvas = (
        cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        if scale < 1.0
        else image.copy()
    )
    out_width = canvas.shape[1]
    thickness = max(2, round(out_width * LINE_WIDTH_PER_PIXEL))
    font_scale = max(0.5, out_width * FONT_SCALE_PER_PIXEL)
    font_thickness = max(1, thickness - 1)
    for row in range(len(tracks)):
        x1, y1, x2, y2 = (round(v * scale) for v in tracks.xyxy[row].tolist())
        track_id = None if tracks.tracker_id is None else int(tracks.tracker_id[row])
        colour = (
            UNTRACKED_COLOUR_BGR if track_id is None
            else TRACK_COLOURS_BGR[track_id % len(TRACK_COLOURS_BGR)]
        )
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = "" if track_id is None else f"#{track_id}"
        for name in label_fields:
            values = tracks.data.get(name)
            text = _label_value(values[row]) if values is not None else None
            if text is not None:
                label = f"{label} {LABEL_PREFIXES.get(name, '')}{text}".strip()
                break
        if not label:
            continue
        (text_width, text_height), baseline = cv2.getTextSize(label, FONT, font_scale, font_thickness)
        top = max(0, y1 - text_height - baseline - thickness)
        cv2.rectangle(
            canvas, (x1, top), (x1 + text_width + 2 * thickness, top + text_height + baseline + thickness),
            colour, cv2.FILLED,
        )
        cv2.putText(
            canvas, label, (x1 + thickness, top + text_height + thickness // 2),
            FONT, font_scale, TEXT_COLOUR_BGR, font_thickness, cv2.LINE_AA,
        )
    return canvas


class SnapshotStore:
    """The latest kept image per camera; `wants_image` is the pipeline's keep_images hook."""

    def __init__(self, settings: DashboardConfig, cameras: list[str]) -> None:
        self.settings = settings
        self.cameras = set(cameras)
        self._min_interval_s = 1.0 / settings.snapshot_max_fps
        self._requested_at: dict[str, float] = {}
        self._kept_at: dict[str, float] = {}
        self._latest: dict[str, _Kept] = {}
        self._encode_lock = asyncio.Lock()

    def add_camera(self, camera: str) -> None:
        self.cameras.add(camera)

    def forget_camera(self, camera: str) -> None:
        """A removed (or restarted) camera: its image and watch times go with it."""
        self.cameras.discard(camera)
        for slot in (self._requested_at, self._kept_at, self._latest):
            slot.pop(camera, None)

    def watching(self, camera: str) -> bool:
        requested = self._requested_at.get(camera)
        return requested is not None and time.monotonic() - requested <= self.settings.snapshot_watch_s

    def wants_image(self, camera: str) -> bool:
        """True at most snapshot_max_fps times a second, and only while the camera is watched."""
        if not self.watching(camera):
            return False
        now = time.monotonic()
        if now - self._kept_at.get(camera, -math.inf) < self._min_interval_s:
            return False
        self._kept_at[camera] = now
        return True

    def observe(self, result: FrameResult) -> None:
        if result.image is not None and result.camera in self.cameras:
            self._latest[result.camera] = _Kept(
                result.image, result.tracks, result.frame_index, result.capture_ts
            )

    async def snapshot(self, camera: str) -> Snapshot | None:
        """The latest annotated JPEG; asking also marks the camera as watched."""
        self._requested_at[camera] = time.monotonic()
        kept = self._latest.get(camera)
        if kept is None:
            return None
        if kept.jpeg is None:
            async with self._encode_lock:  # one encoder at a time: the machine is small
                if kept.jpeg is None:
                    kept.jpeg = await asyncio.to_thread(self._encode, kept)
        return Snapshot(kept.jpeg, kept.frame_index, kept.capture_ts)

    def _encode(self, kept: _Kept) -> bytes:
        canvas = annotate(
            kept.image, kept.tracks, self.settings.label_fields, self.settings.snapshot_max_width
        )
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return encoded.tobytes()
