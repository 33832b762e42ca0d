"""A camera's `motion` settings: run the person detector only when something moves.

Masks are polygons whose motion is ignored (trees, a timestamp the camera draws). Their points are
fractions of the frame (every coordinate within 0..1) or pixels of the decoded frame (any
coordinate above 1): one polygon is one or the other, never a mix.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from streamer.config.base import Section

Point = tuple[float, float]
MIN_POLYGON_POINTS = 3


class MotionConfig(Section):
    enabled: bool | None = Field(
        None,
        description="Skip detection on frames without motion. None = on for live streams "
        "(rtsp://, http://, ...), off for video files (benchmarks and batch runs want every "
        "frame detected; set true to gate a recorded file like a camera).",
    )
    frame_height: int = Field(
        120, ge=16, le=1080, description="Height of the grey frame motion is measured on, px."
    )
    threshold: int = Field(
        25, ge=1, le=255, description="Grey-level difference from the background that is motion."
    )
    min_area: float = Field(
        0.0005, ge=0, lt=1,
        description="Smallest moving region that counts, as a fraction of the frame's area.",
    )
    background_alpha: float = Field(
        0.2, gt=0, le=1,
        description="Weight of each new frame in the running-average background (per frame): "
        "higher forgets a departed person's ghost sooner, and absorbs someone standing still "
        "sooner (keep-alive detection keeps their track).",
    )
    lighting_change: float = Field(
        0.6, gt=0, le=1,
        description="Motion over more than this fraction of the frame is a lighting change: "
        "the background restarts from the frame (which is still detected).",
    )
    keepalive_s: float = Field(
        1.0, gt=0,
        description="Without motion, while the camera has tracks open, one frame per this many "
        "seconds is still detected, so people standing still keep their tracks.",
    )
    idle_keepalive_s: float = Field(
        10.0, gt=0,
        description="Without motion and with no track open (an empty scene), one frame per "
        "this many seconds is detected: anyone entering moves, which is detected at once.",
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons whose motion is ignored: lists of [x, y] points, all fractions of "
        "the frame (0..1) or all pixels.",
    )

    @field_validator("masks")
    @classmethod
    def _polygons(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for index, polygon in enumerate(masks):
            if len(polygon) < MIN_POLYGON_POINTS:
                raise ValueError(
                    f"mask {index}: a polygon needs at least {MIN_POLYGON_POINTS} points, "
                    f"got {len(polygon)}"
                )
            if any(x < 0 or y < 0 for x, y in polygon):
                raise ValueError(f"mask {index}: coordinates must not be negative")
        return masks


def in_pixels(polygon: list[Point], width: int, height: int) -> list[Point]:
    """A mask polygon in pixels of a width x height frame (fractions are scaled, pixels kept)."""
    if all(x <= 1.0 and y <= 1.0 for x, y in polygon):
        return [(x * width, y * height) for x, y in polygon]
    return list(polygon)
