"""Zones and lines in the configuration: what is accepted, and one clear line for each mistake."""

from __future__ import annotations

import pytest

from streamer.assembly import build_stages
from streamer.config import ConfigError, parse_config

CAMERA = "cameras:\n  - name: gate\n    url: clip.mp4\n"


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(CAMERA + extra, source="site.yaml")
    return caught.value.lines


def test_zones_and_lines_in_pixels_and_fractions_are_accepted() -> None:
    config = parse_config(CAMERA + """\
    zones:
      - {name: bay, points: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.9], [0.1, 0.9]], units: fraction,
         min_dwell_s: 1, loiter_after_s: 60, classes: [0], anchor: center}
    lines:
      - {name: door, points: [[100, 300], [700, 300]], directions: [entering, leaving]}
""")
    camera = config.cameras[0]
    assert camera.zones[0].units == "fraction" and camera.zones[0].anchor == "center"
    assert camera.lines[0].directions == ["entering", "leaving"]
    assert camera.lines[0].anchor == "bottom_center"  # the feet, unless told otherwise
    assert [stage.name for stage in build_stages(config)] == ["zones"]
    # No zones yet, but the stage is ready for a camera that brings some at runtime (API, reload).
    assert [stage.name for stage in build_stages(parse_config(CAMERA))] == ["zones"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    zones:\n      - {name: bow, points: [[0, 0], [100, 100], [100, 0], [0, 100]]}\n",
         "site.yaml:5: cameras[0].zones[0]: zone 'bow': the polygon intersects itself: edge 0-1 "
         "crosses edge 2-3; list the points in order around the zone"),
        ("    zones:\n      - {name: flat, points: [[0, 0], [50, 50], [100, 100]]}\n",
         "site.yaml:5: cameras[0].zones[0]: zone 'flat': the points lie on one line: the zone "
         "has no area"),
        ("    zones:\n      - {name: two, points: [[0, 0], [50, 50]]}\n",
         "site.yaml:5: cameras[0].zones[0].points: List should have at least 3 items"),
        ("    lines:\n      - {name: dot, points: [[10, 10], [10, 10]]}\n",
         "site.yaml:5: cameras[0].lines[0]: line 'dot': points A and B are the same point"),
        ("    lines:\n      - {name: l, points: [[0.1, 0.2], [0.5, 0.7]]}\n",
         "site.yaml:5: cameras[0].lines[0]: every coordinate is within [0, 1]: these look like "
         "fractions of the frame; set units: fraction (or give pixel coordinates)"),
        ("    lines:\n      - {name: l, units: fraction, points: [[0.1, 0.2], [0.5, 1.2]]}\n",
         "site.yaml:5: cameras[0].lines[0]: units: fraction needs every coordinate in [0, 1], "
         "got 1.2; use units: pixels for pixel coordinates"),
        ("    lines:\n      - {name: l, directions: [in, in], points: [[10, 20], [30, 40]]}\n",
         "site.yaml:5: cameras[0].lines[0]: line 'l': the two direction names are the same"),
        ("    lines:\n      - {name: l, points: [[10, 20], [30, 40]]}\n"
         "      - {name: l, points: [[10, 20], [30, 50]]}\n",
         "site.yaml:6: cameras[0].lines[1].name: duplicate line name 'l' in camera 'gate' (first "
         "used at lines[0])"),
        ("    zones:\n      - {name: 'a/b', points: [[0, 0], [9, 0], [9, 9]]}\n",
         "site.yaml:5: cameras[0].zones[0].name: String should match pattern"),
        ("    zones:\n      - {name: z, points: [[0, 0], [9, 0], [9, 9]], dwell: 3}\n",
         "site.yaml:5: cameras[0].zones[0].dwell: unknown key"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(extra: str, expected: str) -> None:
    lines = problems(extra)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]


def test_the_shipped_zones_example_loads() -> None:
    from streamer.config import load_config
    from tests.support.checkout import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "zones.yaml")
    (camera,) = config.cameras
    assert camera.file_path.is_file()
    assert [z.name for z in camera.zones] == ["road"] and [x.name for x in camera.lines] == ["crossing"]
