"""The geometry against OpenCV's own point-in-polygon test, on concave zones and random points."""

from __future__ import annotations

import cv2
import numpy as np

from streamer.analytics.geometry import anchor_points, resolve
from streamer.config import CameraConfig

L_SHAPE = [[100, 100], [400, 100], [400, 200], [200, 200], [200, 450], [100, 450]]
ARROW = [[500, 300], [700, 100], [650, 300], [700, 500]]  # concave at (650, 300)
TRIANGLE = [[0.1, 0.6], [0.4, 0.95], [0.05, 0.95]]


def test_every_zone_agrees_with_opencv_point_polygon_test() -> None:
    camera = CameraConfig.model_validate({
        "name": "c", "url": "x.mp4",
        "zones": [
            {"name": "l", "points": L_SHAPE},
            {"name": "arrow", "points": ARROW, "anchor": "center"},
            {"name": "corner", "points": TRIANGLE, "units": "fraction"},
        ],
    })
    geometry = resolve(camera, 800, 600)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 800, 3000), rng.uniform(0, 600, 3000)
    boxes = np.stack([x - 10, y - 40, x + 10, y], axis=1)
    anchors = {a: anchor_points(boxes, a) for a in ("bottom_center", "center")}
    inside = geometry.zones_inside(anchors, len(boxes))  # type: ignore[arg-type]
    for column, zone in enumerate(geometry.zones):
        contour = zone.polygon.astype(np.float32).reshape(-1, 1, 2)
        points = anchors[zone.config.anchor]
        expected = [cv2.pointPolygonTest(contour, (float(px), float(py)), True) for px, py in points]
        clear = np.abs(expected) > 1e-6  # points exactly on an edge may go either way
        assert np.array_equal(inside[clear, column], (np.asarray(expected) > 0)[clear]), zone.name
        assert inside[:, column].any()


def test_line_distances_are_signed_pixels_right_of_a_to_b() -> None:
    camera = CameraConfig.model_validate({
        "name": "c", "url": "x.mp4",
        "lines": [{"name": "across", "points": [[100, 300], [700, 300]]},
                  {"name": "up", "points": [[400, 500], [400, 100]]}],
    })
    geometry = resolve(camera, 800, 600)
    points = np.array([[[250.0, 320.0], [250.0, 320.0]]])  # one track, the same point for both
    across, up = geometry.line_distances(points)[0]
    assert across == 20.0  # below a left-to-right line: its right side
    assert up == -150.0  # left of a bottom-to-top line
