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
    return Edges.of(polygon).contain(points)


@dataclass(frozen=True)
class Edges:
    """A polygon's edges, prepared once for the even-odd test of many points."""

    x1: FloatArray
    y1: FloatArray
    y2: FloatArray
    dx_dy: FloatArray  # x change per unit of y along each edge (0 for horizontal edges)

    @classmethod
    def of(cls, polygon: FloatArray) -> Edges:
        x1, y1 = polygon[:, 0], polygon[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        dy = y2 - y1
        dx_dy = np.divide(x2 - x1, dy, out=np.zeros_like(dy), where=dy != 0)
        return cls(x1, y1, y2, dx_dy)

    def contain(self, points: FloatArray) -> BoolArray:
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        x, y = points[:, 0:1], points[:, 1:2]
        straddles = (self.y1 > y) != (self.y2 > y)  # never true for a horizontal edge
        crossings = straddles & (x < self.x1 + (y - self.y1) * self.dx_dy)
        return np.asarray(np.count_nonzero(crossings, axis=1) % 2 == 1)


def segments_cross(
    p1: Sequence[float], p2: Sequence[float], a: Sequence[float], b: Sequence[float]
) -> bool:
    """Whether the path p1 -> p2 meets the segment a -> b (touching counts)."""

    def cross(o: Sequence[float], u: Sequence[float], v: Sequence[float]) -> float:
        return float((u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0]))

    d1, d2 = cross(a, b, p1), cross(a, b, p2)
    d3, d4 = cross(p1, p2, a), cross(p1, p2, b)
    return d1 * d2 <= 0 and d3 * d4 <= 0


@dataclass(frozen=True)
class Zone:
    config: ZoneConfig
    polygon: FloatArray  # (K, 2) pixels
    edges: Edges

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
    ends: tuple[tuple[float, float], tuple[float, float]]  # A and B as plain numbers

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

    def line_distances(self, anchors: dict[Anchor, FloatArray], count: int) -> FloatArray:
        """(N, L) signed pixels of every track's anchor from every line (> 0: right of A -> B)."""
        distances = np.empty((count, len(self.lines)))
        for column, line in enumerate(self.lines):
            distances[:, column] = line.signed_distances(anchors[line.config.anchor])
        return distances

    @property
    def line_bands(self) -> FloatArray:
        return np.array([line.hysteresis_px for line in self.lines])


def resolve(camera: CameraConfig, width: int, height: int) -> CameraGeometry:
    zones = []
    for zone in camera.zones:
        polygon = to_pixels(zone.points, zone.units, width, height)
        zones.append(Zone(zone, polygon, Edges.of(polygon)))
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
        ends = ((float(a[0]), float(a[1])), (float(b[0]), float(b[1])))
        lines.append(Line(line, a, b, normal, hysteresis, ends))
    return CameraGeometry(width, height, tuple(zones), tuple(lines))
