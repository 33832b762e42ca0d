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


@dataclass(frozen=True)
class Edges:
    """A polygon's edges, prepared once for the even-odd test of many points (`ZoneGroup`)."""

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


@dataclass(frozen=True)
class ZoneGroup:
    """The zones sharing one anchor, their edges end to end: one even-odd test for all of them."""

    anchor: Anchor
    columns: npt.NDArray[np.intp]  # which of the camera's zones, in order
    edges: Edges
    starts: npt.NDArray[np.intp]  # first edge of each zone in `edges`

    def contain(self, points: FloatArray) -> BoolArray:
        """(N, zones of the group): whether each point is inside each zone."""
        e = self.edges
        x, y = points[:, 0:1], points[:, 1:2]
        crossings = ((e.y1 > y) != (e.y2 > y)) & (x < e.x1 + (y - e.y1) * e.dx_dy)
        return np.asarray(np.add.reduceat(crossings, self.starts, axis=1, dtype=np.int32) % 2 == 1)


@dataclass(frozen=True)
class CameraGeometry:
    """One camera's zones and lines in pixels of a `width` x `height` frame, prepared so that a
    frame costs a few array operations whatever the number of zones and lines."""

    width: int
    height: int
    zones: tuple[Zone, ...]
    lines: tuple[Line, ...]
    zone_groups: tuple[ZoneGroup, ...]
    line_normals: FloatArray  # (L, 2)
    line_offsets: FloatArray  # (L,) A . normal
    line_bands: FloatArray  # (L,) hysteresis in pixels

    def zones_inside(self, anchors: dict[Anchor, FloatArray], count: int) -> BoolArray:
        """(N, Z): whether each track's anchor is inside each zone."""
        inside = np.zeros((count, len(self.zones)), dtype=bool)
        if count:
            for group in self.zone_groups:
                inside[:, group.columns] = group.contain(anchors[group.anchor])
        return inside

    def line_distances(self, points: FloatArray) -> FloatArray:
        """(N, L) signed pixels from each line of each track's (N, L, 2) anchor point for it;
        > 0 on the line's right side, seen from A towards B."""
        normals = self.line_normals
        return np.asarray(
            points[..., 0] * normals[:, 0] + points[..., 1] * normals[:, 1] - self.line_offsets
        )


def _zone_groups(zones: list[Zone]) -> tuple[ZoneGroup, ...]:
    groups = []
    for anchor in dict.fromkeys(zone.config.anchor for zone in zones):
        columns = [i for i, zone in enumerate(zones) if zone.config.anchor == anchor]
        parts = [zones[i].edges for i in columns]
        edges = Edges(*(np.concatenate([getattr(p, name) for p in parts])
                        for name in ("x1", "y1", "y2", "dx_dy")))
        starts = np.cumsum([0] + [len(p.x1) for p in parts[:-1]])
        groups.append(ZoneGroup(anchor, np.asarray(columns, np.intp), edges, starts.astype(np.intp)))
    return tuple(groups)


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
    return CameraGeometry(
        width,
        height,
        tuple(zones),
        tuple(lines),
        _zone_groups(zones),
        np.array([line.normal for line in lines]).reshape(-1, 2),
        np.array([float(line.a @ line.normal) for line in lines]),
        np.array([line.hysteresis_px for line in lines]),
    )
