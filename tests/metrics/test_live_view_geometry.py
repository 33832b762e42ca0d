"""Zones and lines drawn on the dashboard's snapshots, in pixels or fractions of the frame."""

from __future__ import annotations

import numpy as np

from streamer.config import LineConfig, ZoneConfig
from streamer.core.detections import Detections
from streamer.metrics.live_view import LINE_COLOUR_BGR, Geometry, annotate


def test_zone_and_line_are_drawn_where_configured_on_a_scaled_picture() -> None:
    image = np.zeros((400, 800, 3), dtype=np.uint8)
    zone = ZoneConfig(name="bay", points=[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)],
                      units="fraction")
    line = LineConfig(name="door", points=[(100, 20), (100, 380)])
    canvas = annotate(image, Detections.empty(), [], max_width=400, geometry=Geometry((zone,), (line,)))
    assert canvas.shape[:2] == (200, 400)
    inside_zone = canvas[160, 300]  # (0.75, 0.8) of the frame: filled lightly
    assert inside_zone.any() and int(inside_zone.max()) < 128
    assert not canvas[40, 100].any(), "outside both: untouched"
    on_line = canvas[150, 50]  # x 100 px of 800 -> 50 px of 400
    assert tuple(int(v) for v in on_line) == LINE_COLOUR_BGR


def test_without_geometry_the_picture_is_only_scaled() -> None:
    image = np.full((100, 200, 3), 7, dtype=np.uint8)
    assert (annotate(image, Detections.empty(), [], max_width=200) == 7).all()
