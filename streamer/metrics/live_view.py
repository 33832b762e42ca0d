"""The live view: annotated JPEG pictures per camera, kept at a low rate while someone watches.

Each picture shows the camera's zones (outlined, lightly filled, named) and lines (named, with
an arrow towards the side a crossing in the first direction goes to), under the tracks' boxes.

The pipeline asks `wants_image(camera)` for every frame; saying yes costs only a reference to the
decoded image. Drawing and JPEG encoding happen on request, in a worker thread, once per image.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config import CameraConfig, DashboardConfig, LineConfig, ZoneConfig
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
ZONE_COLOUR_BGR = (255, 200, 60)
LINE_COLOUR_BGR = (60, 60, 255)
ZONE_FILL_ALPHA = 0.18
ARROW_LENGTH_PER_PIXEL = 1 / 25  # the direction arrow on a line, relative to the image width


@dataclass(frozen=True)
class Geometry:
    """A camera's zones and lines, as configured (pixels of the decoded frame or fractions)."""

    zones: tuple[ZoneConfig, ...] = ()
    lines: tuple[LineConfig, ...] = ()


@dataclass
class _Kept:
    image: np.ndarray
    tracks: Detections
    frame_index: int
    capture_ts: float
    jpeg: bytes | None = None


@dataclass(frozen=True)
class LivePicture:
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


def _on_canvas(
    points: Iterable[tuple[float, float]], units: str, width: int, height: int, scale: float
) -> np.ndarray:
    """Configured points in pixels of the (scaled) canvas, as int32 (N, 2)."""
    array = np.asarray(list(points), dtype=np.float64)
    if units == "fraction":
        array = array * np.array([width, height], dtype=np.float64)
    return np.round(array * scale).astype(np.int32)


def _label(
    canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int],
    font_scale: float, thickness: int,
) -> None:
    """Text on a filled box whose bottom-left corner is at origin (kept inside the image)."""
    font_thickness = max(1, thickness - 1)
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, font_scale, font_thickness)
    x = min(max(0, origin[0]), max(0, canvas.shape[1] - text_width - 2 * thickness))
    top = min(max(0, origin[1] - text_height - baseline - thickness),
              max(0, canvas.shape[0] - text_height - baseline - thickness))
    cv2.rectangle(
        canvas, (x, top), (x + text_width + 2 * thickness, top + text_height + baseline + thickness),
        colour, cv2.FILLED,
    )
    cv2.putText(canvas, text, (x + thickness, top + text_height + thickness // 2),
                FONT, font_scale, TEXT_COLOUR_BGR, font_thickness, cv2.LINE_AA)


def draw_geometry(
    canvas: np.ndarray, geometry: Geometry, width: int, height: int, scale: float,
    font_scale: float, thickness: int,
) -> None:
    """Zones and lines of a width x height frame onto its canvas, scaled by `scale`."""
    if geometry.zones:
        fill = canvas.copy()
        polygons = [
            _on_canvas(zone.points, zone.units, width, height, scale) for zone in geometry.zones
        ]
        cv2.fillPoly(fill, polygons, ZONE_COLOUR_BGR)
        cv2.addWeighted(fill, ZONE_FILL_ALPHA, canvas, 1 - ZONE_FILL_ALPHA, 0, dst=canvas)
        for zone, polygon in zip(geometry.zones, polygons):
            cv2.polylines(canvas, [polygon], True, ZONE_COLOUR_BGR, thickness, cv2.LINE_AA)
            top_left = polygon[np.lexsort((polygon[:, 0], polygon[:, 1]))[0]]
            _label(canvas, zone.name, (int(top_left[0]), int(top_left[1]) + 1),
                   ZONE_COLOUR_BGR, font_scale, thickness)
    arrow = max(8.0, canvas.shape[1] * ARROW_LENGTH_PER_PIXEL)
    for line in geometry.lines:
        a, b = _on_canvas(line.points, line.units, width, height, scale)
        cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), LINE_COLOUR_BGR,
                 thickness, cv2.LINE_AA)
        middle = (a + b) / 2
        along = (b - a) / max(1e-9, float(np.hypot(*(b - a))))
        right = np.array([-along[1], along[0]])  # standing on A facing B, y down: the right side
        tip = middle + right * arrow
        cv2.arrowedLine(canvas, tuple(int(v) for v in middle), tuple(int(v) for v in tip),
                        LINE_COLOUR_BGR, thickness, cv2.LINE_AA, tipLength=0.35)
        _label(canvas, f"{line.name}: {line.directions[0]} ->", (int(tip[0]), int(tip[1])),
               LINE_COLOUR_BGR, font_scale, thickness)


def annotate(
    image: np.ndarray, tracks: Detections, label_fields: list[str], max_width: int,
    geometry: Geometry | None = None,
) -> np.ndarray:
    """A copy of the image (scaled to max_width) with zones, lines, boxes, track ids and names."""
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
    if geometry is not None:
        draw_geometry(canvas, geometry, width, height, scale, font_scale, thickness)
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


class LiveViewStore:
    """The latest kept image per camera; `wants_image` is the pipeline's keep_images hook."""

    def __init__(self, settings: DashboardConfig, cameras: list[str]) -> None:
        self.settings = settings
        self.cameras = set(cameras)
        self._min_interval_s = 1.0 / settings.live_view_max_fps
        self._requested_at: dict[str, float] = {}
        self._kept_at: dict[str, float] = {}
        self._latest: dict[str, _Kept] = {}
        self._geometry: dict[str, Geometry] = {}
        self._encode_lock = asyncio.Lock()

    def add_camera(self, camera: str) -> None:
        self.cameras.add(camera)

    def follow_cameras(self, cameras: Sequence[CameraConfig]) -> None:
        """The cameras' current zones and lines (at start and after every change at runtime)."""
        self._geometry = {
            camera.name: Geometry(tuple(camera.zones), tuple(camera.lines))
            for camera in cameras
            if camera.zones or camera.lines
        }

    def forget_camera(self, camera: str) -> None:
        """A removed (or restarted) camera: its image and watch times go with it."""
        self.cameras.discard(camera)
        for slot in (self._requested_at, self._kept_at, self._latest):
            slot.pop(camera, None)

    def watching(self, camera: str) -> bool:
        requested = self._requested_at.get(camera)
        return requested is not None and time.monotonic() - requested <= self.settings.live_view_watch_s

    def wants_image(self, camera: str) -> bool:
        """True at most live_view_max_fps times a second, and only while the camera is watched."""
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

    async def picture(self, camera: str) -> LivePicture | None:
        """The latest annotated JPEG; asking also marks the camera as watched."""
        self._requested_at[camera] = time.monotonic()
        kept = self._latest.get(camera)
        if kept is None:
            return None
        if kept.jpeg is None:
            async with self._encode_lock:  # one encoder at a time: the machine is small
                if kept.jpeg is None:
                    geometry = self._geometry.get(camera)
                    kept.jpeg = await asyncio.to_thread(self._encode, kept, geometry)
        return LivePicture(kept.jpeg, kept.frame_index, kept.capture_ts)

    def _encode(self, kept: _Kept, geometry: Geometry | None) -> bytes:
        canvas = annotate(
            kept.image, kept.tracks, self.settings.label_fields, self.settings.live_view_max_width,
            geometry,
        )
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return encoded.tobytes()
