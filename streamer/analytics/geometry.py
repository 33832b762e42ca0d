"""Zones and lines resolved to pixels of one frame size, and the geometry they need, vectorised.

Fractional coordinates are multiplied by the frame's width and height, so a zone drawn in
fractions follows a change of resolution; pixel coordinates are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.config import CameraConfig, LineConfig, ZoneConfig
from streamer.config.analytics import Anchor, Units

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DEFAULT_HYSTERESIS = 0.02  # of the frame's shorter side


def to_pixels(points: Sequence[tuple[float, float]], units: Units, width: int, height: int) -> FloatArray:
    array = np.asarray(points, dtype=np.float64)
    if units == "fraction":
        array = array * np.array([width, height], dtype=np.float64)
    return array


def anchor_points(xyxy: npt.NDArray[np.floating], anchor: Anchor) -> FloatArray:
    """(N, 2) deciding points of boxes: bottom centre (the feet), centre or top centre."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    if anchor == "bottom_center":
        y = boxes[:, 3]
    elif anchor == "top_center":
        y = boxes[:, 1]
    else:
        y = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


def inside_polygon(points: FloatArray, polygon: FloatArray) -> BoolArray:
    """Even-odd rule for (N, 2) points against a (K, 2) polygon, all at once."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = straddles & (x < crossing_x)
    return np.asarray(np.count_nonzero(crossings, axis=1) % 2 == 1)


def segments_cross(p1: FloatArray, p2: FloatArray, a: FloatArray, b: FloatArray) -> bool:
    """Whether the path p1 -> p2 meets the segment a -> b (touching counts)."""

    def cross(o: FloatArray, u: FloatArray, v: FloatArray) -> float:
        return float((u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0]))

    d1, d2 = cross(a, b, p1), cross(a, b, p2)
    d3, d4 = cross(p1, p2, a), cross(p1, p2, b)
    return d1 * d2 <= 0 and d3 * d4 <= 0


@dataclass(frozen=True)
class Zone:
    config: ZoneConfig
    polygon: FloatArray  # (K, 2) pixels

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Line:
    config: LineConfig
    a: FloatArray
    b: FloatArray
    normal: FloatArray  # unit vector to the right of A -> B (screen, y down)
    hysteresis_px: float

    @property
    def name(self) -> str:
        return self.config.name

    def signed_distances(self, points: FloatArray) -> FloatArray:
        """Pixels from the (infinite) line; > 0 on its right side, seen from A towards B."""
        return np.asarray((points - self.a) @ self.normal)


@dataclass(frozen=True)
class CameraGeometry:
    """One camera's zones and lines in pixels of a `width` x `height` frame."""

    width: int
    height: int
    zones: tuple[Zone, ...]
    lines: tuple[Line, ...]


def resolve(camera: CameraConfig, width: int, height: int) -> CameraGeometry:
    zones = tuple(
        Zone(zone, to_pixels(zone.points, zone.units, width, height)) for zone in camera.zones
    )
    lines = []
    shorter = float(min(width, height))
    for line in camera.lines:
        a, b = to_pixels(line.points, line.units, width, height)
        along = b - a
        # Right of A -> B with y down: rotate the direction by +90 degrees on screen.
        normal = np.array([-along[1], along[0]]) / float(np.hypot(along[0], along[1]))
        if line.hysteresis is None:
            hysteresis = DEFAULT_HYSTERESIS * shorter
        elif line.units == "fraction":
            hysteresis = line.hysteresis * shorter
        else:
            hysteresis = line.hysteresis
        lines.append(Line(line, a, b, normal, hysteresis))
    return CameraGeometry(width, height, zones, tuple(lines))
