"""Zones and lines per camera (`cameras[].zones`, `cameras[].lines`), and the `analytics` section.

Coordinates are explicit about their units: `units: pixels` (the default) are pixels of the
decoded frame, `units: fraction` are fractions of its width (x) and height (y), every value in
[0, 1], so a zone drawn once survives a change of the camera's resolution. The image's origin is
its top-left corner, x to the right, y down.

A line is the segment from point A (`points[0]`) to point B (`points[1]`). Standing on A and
looking towards B (on the screen, y down), a crossing from the left side to the right side is the
first direction name (`in` by default), from right to left the second (`out`). For a line drawn
left to right across the picture, `in` is walking down the picture (towards the camera, for a
camera looking down a street) and `out` walking up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from streamer.config.base import Section

ANALYTICS_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Anchor = Literal["bottom_center", "center", "top_center"]
Units = Literal["pixels", "fraction"]
Point = tuple[float, float]


def _check_units(points: Sequence[Point], units: Units) -> None:
    values = [v for point in points for v in point]
    if units == "fraction":
        outside = [v for v in values if not 0.0 <= v <= 1.0]
        if outside:
            raise ValueError(
                f"units: fraction needs every coordinate in [0, 1], got {outside[0]:g}; "
                "use units: pixels for pixel coordinates"
            )
    elif all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(
            "every coordinate is within [0, 1]: these look like fractions of the frame; "
            "set units: fraction (or give pixel coordinates)"
        )
    elif any(v < 0 for v in values):
        raise ValueError(f"pixel coordinates must be >= 0, got {min(values):g}")


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Proper or touching intersection of two closed segments."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(p: Point, q: Point, r: Point) -> bool:
        return (min(p[0], q[0]) <= r[0] <= max(p[0], q[0])
                and min(p[1], q[1]) <= r[1] <= max(p[1], q[1]))

    return ((d1 == 0 and on(q1, q2, p1)) or (d2 == 0 and on(q1, q2, p2))
            or (d3 == 0 and on(p1, p2, q1)) or (d4 == 0 and on(p1, p2, q2)))


def polygon_problem(points: Sequence[Point]) -> str | None:
    """Why these points are not a simple polygon (repeated point, no area, edges crossing)."""
    n = len(points)
    for i in range(n):
        if points[i] == points[(i + 1) % n]:
            return f"points {i} and {(i + 1) % n} are the same point"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring edges share a point
            if _segments_intersect(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return (
                    f"the polygon intersects itself: edge {i}-{(i + 1) % n} crosses edge "
                    f"{j}-{(j + 1) % n}; list the points in order around the zone"
                )
    area = sum(_cross((0.0, 0.0), points[i], points[(i + 1) % n]) for i in range(n)) / 2
    if area == 0:
        return "the points lie on one line: the zone has no area"
    return None


class ZoneConfig(Section):
    """A polygon; a confirmed track is in it when its anchor point is inside."""

    name: str = Field(
        description="Zone name, unique per camera; used in events, topics and metric labels.",
        pattern=ANALYTICS_NAME_PATTERN,
    )
    points: list[Point] = Field(
        min_length=3,
        description="Corners [x, y] in order around the polygon (at least 3, edges not crossing).",
    )
    units: Units = Field(
        "pixels",
        description="'pixels' of the decoded frame, or 'fraction' of its width/height (all values "
        "in [0, 1]; follows a change of resolution).",
    )
    anchor: Anchor = Field(
        "bottom_center",
        description="The point of a track's box that must be inside: 'bottom_center' (the feet), "
        "'center' or 'top_center'.",
    )
    classes: list[int] | None = Field(
        None, description="Class ids that count in this zone (detector classes, 0=person); None = all."
    )
    min_dwell_s: float = Field(
        0.0, ge=0, description="Seconds inside before `zone_enter` is reported (and occupancy counts)."
    )
    exit_after_s: float = Field(
        0.5, ge=0,
        description="Seconds outside before `zone_exit` is reported; a box flickering on the edge "
        "stays in.",
    )
    loiter_after_s: float | None = Field(
        None, gt=0, description="Report `loitering` once per track when its dwell passes this; None = off."
    )

    @model_validator(mode="after")
    def _valid_polygon(self) -> ZoneConfig:
        _check_units(self.points, self.units)
        problem = polygon_problem(self.points)
        if problem is not None:
            raise ValueError(f"zone '{self.name}': {problem}")
        return self


class LineConfig(Section):
    """A segment from A to B; a track crossing it is counted once per direction."""

    name: str = Field(
        description="Line name, unique per camera; used in events, topics and metric labels.",
        pattern=ANALYTICS_NAME_PATTERN,
    )
    points: tuple[Point, Point] = Field(
        description="[A, B]: the two ends [x, y] of the line."
    )
    units: Units = Field(
        "pixels",
        description="'pixels' of the decoded frame, or 'fraction' of its width/height (all values "
        "in [0, 1]; follows a change of resolution).",
    )
    directions: Annotated[list[str], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: ["in", "out"],
        description="Names of the two directions: the first is a crossing from the left of the "
        "line to its right, standing on A and looking towards B (y down on the screen); the "
        "second the other way.",
    )
    anchor: Anchor = Field(
        "bottom_center", description="The point of a track's box that crosses the line."
    )
    classes: list[int] | None = Field(
        None, description="Class ids that count on this line (0=person); None = all."
    )
    hysteresis: float | None = Field(
        None, gt=0,
        description="How far past the line (each side) the anchor must be before its side counts, "
        "in the line's units (pixels, or a fraction of the frame's shorter side); None = 2% of "
        "the frame's shorter side. A box jittering on the line never counts twice.",
    )

    @model_validator(mode="after")
    def _valid_line(self) -> LineConfig:
        _check_units(self.points, self.units)
        if self.points[0] == self.points[1]:
            raise ValueError(f"line '{self.name}': points A and B are the same point")
        for direction in self.directions:
            if not _matches_name(direction):
                raise ValueError(
                    f"line '{self.name}': direction name '{direction}' must be letters, digits, "
                    "'_' or '-'"
                )
        if self.directions[0] == self.directions[1]:
            raise ValueError(f"line '{self.name}': the two direction names are the same")
        if self.units == "fraction" and self.hysteresis is not None and self.hysteresis > 1:
            raise ValueError("hysteresis with units: fraction is a fraction of the frame (<= 1)")
        return self


def _matches_name(name: str) -> bool:
    return re.fullmatch(ANALYTICS_NAME_PATTERN, name) is not None


class AnalyticsConfig(Section):
    """Rules shared by every camera's zones and lines."""

    min_track_frames: int = Field(
        3, ge=1,
        description="A track counts in zones and lines only once seen in this many frames "
        "(besides the tracker's own confirmation): a one-off false detection never counts.",
    )

