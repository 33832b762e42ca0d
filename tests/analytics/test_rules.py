"""Every rule of zones and lines, on scripted tracks (no video, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.analytics.stage import ZoneLineStage
from streamer.config import TrackerConfig
from streamer.core.detections import Detections
from streamer.core.events import LineCrossEvent, TrackEvent, TrackEventType, ZoneEvent
from streamer.core.frames import Frame, FrameResult
from streamer.tracking.camera_tracker import CameraTracker
from tests.analytics.scripted import (
    CAMERA,
    Script,
    config,
    crossings,
    feet_box,
    zone_events,
)

SQUARE = [[200, 200], [400, 200], [400, 400], [200, 400]]
# A horizontal line, A on the left, B on the right: `in` is walking down the picture.
ACROSS = [[100, 300], [700, 300]]


def script(zones=None, lines=None, **analytics) -> Script:  # type: ignore[no-untyped-def]
    return Script(ZoneLineStage(config(zones, lines, **analytics)))


def steps(start: tuple[float, float], end: tuple[float, float], count: int) -> list[tuple[float, float]]:
    return [
        (start[0] + (end[0] - start[0]) * i / (count - 1), start[1] + (end[1] - start[1]) * i / (count - 1))
        for i in range(count)
    ]


async def test_entering_and_leaving_a_zone_reports_both_with_the_dwell() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE, "exit_after_s": 0.0}])
    assert await s.walk(1, [(100, 300), (150, 300)]) == []
    entered = await s.walk(1, [(300, 300)])
    assert zone_events(entered) == [("zone_enter", "bay", 1)]
    assert isinstance(entered[0], ZoneEvent) and entered[0].occupancy == 1
    assert s.zones_of(1) == ["bay"]
    await s.walk(1, [(310, 300)] * 9)  # 1 s inside in all
    left = await s.walk(1, [(500, 300)])
    assert zone_events(left) == [("zone_exit", "bay", 1)]
    exit_event = left[0]
    assert isinstance(exit_event, ZoneEvent)
    assert exit_event.dwell_s == pytest.approx(0.9) and exit_event.occupancy == 0
    assert s.zones_of(1) == []
    assert s.stage.stats.occupancy[(CAMERA, "bay")] == 0
    assert s.stage.stats.zone_events[(CAMERA, "bay", "zone_enter")] == 1
    assert s.stage.stats.zone_events[(CAMERA, "bay", "zone_exit")] == 1


async def test_a_box_flickering_on_the_zone_edge_stays_in_until_out_for_exit_after_s() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE, "exit_after_s": 0.5}])
    await s.walk(1, [(395, 300), (405, 300)] * 10)  # the feet cross the edge every frame
    assert zone_events(s.events) == [("zone_enter", "bay", 1)]
    out = await s.walk(1, [(450, 300)] * 6)
    assert zone_events(out) == [("zone_exit", "bay", 1)]


async def test_zone_enter_waits_for_min_dwell_and_a_short_visit_reports_nothing() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE, "min_dwell_s": 1.0, "exit_after_s": 0.0}])
    await s.walk(1, [(300, 300)] * 5)  # 0.4 s inside
    await s.walk(1, [(500, 300)] * 3)
    assert s.events == []
    await s.walk(2, [(300, 300)] * 10)  # 0.0 .. 0.9 s
    assert s.events == []
    entered = await s.walk(2, [(300, 300)])  # 1.0 s
    assert zone_events(entered) == [("zone_enter", "bay", 2)]
    assert s.stage.stats.occupancy[(CAMERA, "bay")] == 1


async def test_loitering_is_reported_once_when_the_dwell_passes_the_threshold() -> None:
    s = script(zones=[{"name": "door", "points": SQUARE, "loiter_after_s": 2.0}])
    await s.walk(7, [(300, 300)] * 60)  # 6 s
    kinds = zone_events(s.events)
    assert kinds == [("zone_enter", "door", 7), ("loitering", "door", 7)]
    loitering = s.events[1]
    assert isinstance(loitering, ZoneEvent) and loitering.dwell_s == pytest.approx(2.0)
    assert loitering.frame_index == 20


async def test_a_track_that_appears_inside_a_zone_enters_it() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE}])
    first = await s.frame({4: feet_box(300, 300), 5: feet_box(600, 500)})
    assert zone_events(first) == [("zone_enter", "bay", 4)]


async def test_crossing_both_ways_counts_each_direction_once_per_track() -> None:
    s = script(lines=[{"name": "door", "points": ACROSS}])
    down = await s.walk(1, steps((300, 250), (300, 350), 11))
    assert crossings(down) == [("door", "in", 1)]
    assert isinstance(down[0], LineCrossEvent) and down[0].counts == {"in": 1, "out": 0}
    up = await s.walk(1, steps((300, 350), (300, 250), 11))
    assert crossings(up) == [("door", "out", 1)]
    again = await s.walk(1, steps((300, 250), (300, 350), 11))
    assert again == []  # once per track, line and direction
    await s.walk(2, steps((500, 350), (500, 250), 11))
    assert crossings(s.events)[-1] == ("door", "out", 2)
    assert s.stage.stats.line_crossings == {(CAMERA, "door", "in"): 1, (CAMERA, "door", "out"): 2}


async def test_a_box_jittering_on_the_line_never_counts() -> None:
    s = script(lines=[{"name": "door", "points": ACROSS}])  # hysteresis 2% of 576 = 11.5 px
    await s.walk(1, [(300, 270)])
    rng = np.random.default_rng(0)
    await s.walk(1, [(300 + rng.uniform(-5, 5), 300 + rng.uniform(-11, 11)) for _ in range(100)])
    assert s.events == []
    walked_on = await s.walk(1, [(300, 330)])
    assert crossings(walked_on) == [("door", "in", 1)]


async def test_a_track_id_switch_on_the_line_makes_no_phantom_crossing() -> None:
    s = script(lines=[{"name": "door", "points": ACROSS, "hysteresis": 15}])
    await s.walk(1, steps((300, 240), (300, 295), 6))  # settles above, stops on the line
    # The tracker loses the person on the line and starts a new id just below it.
    await s.frame({2: feet_box(300, 305)}, ended=(1,))
    await s.walk(2, steps((300, 305), (300, 400), 10))
    assert crossings(s.events) == []


async def test_walking_past_the_end_of_the_line_is_no_crossing() -> None:
    s = script(lines=[{"name": "door", "points": [[300, 300], [500, 300]]}])
    await s.walk(1, steps((100, 250), (100, 350), 11))  # left of A
    await s.walk(2, steps((600, 350), (600, 250), 11))  # right of B
    assert s.events == []


async def test_unconfirmed_tracks_never_count() -> None:
    # The real tracker: a detection seen in one frame only is never confirmed, never published.
    stage = ZoneLineStage(config(zones=[{"name": "bay", "points": SQUARE}],
                                 lines=[{"name": "door", "points": ACROSS}]))
    tracker = CameraTracker(CAMERA, TrackerConfig(), 10.0)
    events = []
    image = np.zeros((576, 768, 3), np.uint8)
    for index in range(12):
        boxes = [feet_box(600, 500)]  # someone standing still, outside everything
        if index == 5:
            boxes.append(feet_box(300, 310))  # a one-frame false detection, in the zone
        detections = Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                                np.zeros(len(boxes), np.int64))
        frame = Frame(CAMERA, index, 1_700_000_000 + index / 10, 0.0, image)
        tracks, track_events = tracker.update(frame, detections)
        result = FrameResult(CAMERA, index, frame.capture_ts, 768, 576, tracks, 0.0, {},
                             events=[*track_events])
        await stage.process(frame, result, tracker)
        events += [e for e in result.events if isinstance(e, ZoneEvent | LineCrossEvent)]
    assert events == []
    # And a published track counts only once seen in analytics.min_track_frames frames.
    s = script(zones=[{"name": "bay", "points": SQUARE}], min_track_frames=3)
    await s.walk(1, [(300, 300)] * 2)
    await s.frame({}, ended=(1,))
    assert s.events == []
    await s.walk(2, [(300, 300)] * 3)
    assert zone_events(s.events) == [("zone_enter", "bay", 2)]


async def test_a_track_that_ends_or_a_camera_that_stops_leaves_its_zones() -> None:
    everywhere = [[0, 0], [768, 0], [768, 576], [0, 576]]
    s = script(zones=[{"name": "bay", "points": SQUARE}, {"name": "all", "points": everywhere}])
    await s.frame({1: feet_box(300, 300), 2: feet_box(310, 300)})
    await s.frame({1: feet_box(300, 300), 2: feet_box(310, 300)})
    assert s.stage.stats.occupancy[(CAMERA, "bay")] == 2
    ended = await s.frame({2: feet_box(310, 300)}, ended=(1,))
    assert sorted(zone_events(ended)) == [("zone_exit", "all", 1), ("zone_exit", "bay", 1)]
    assert s.stage.stats.occupancy[(CAMERA, "bay")] == 1
    # as CameraTracker.finish makes it
    stopped = TrackEvent(TrackEventType.END, CAMERA, 2, 3, s.now, {"track_id": 2}, None)
    closing = s.stage.finish_events(CAMERA, [stopped])
    assert closing[0] is stopped
    closing = closing[1:]
    assert sorted(zone_events(closing)) == [("zone_exit", "all", 2), ("zone_exit", "bay", 2)]
    assert all(isinstance(e, ZoneEvent) and e.occupancy == 0 for e in closing)
    s.stage.forget_camera(CAMERA)
    assert s.stage.stats.occupancy == {(CAMERA, "bay"): 0, (CAMERA, "all"): 0}


async def test_zones_and_lines_in_fractions_follow_a_change_of_resolution() -> None:
    centre = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]
    s = script(
        zones=[{"name": "middle", "points": centre, "units": "fraction", "exit_after_s": 0},
               {"name": "pixels", "points": SQUARE, "exit_after_s": 0}],
        lines=[{"name": "half", "points": [[0, 0.5], [1, 0.5]], "units": "fraction"}],
    )
    await s.walk(1, [(384, 288)])  # centre of 768x576
    assert s.zones_of(1) == ["middle", "pixels"]
    s.width, s.height = 1920, 1080
    await s.walk(1, [(384, 288)])  # the same pixels are now outside the middle of 1920x1080
    assert s.zones_of(1) == ["pixels"]
    await s.walk(1, [(960, 540)])
    assert s.zones_of(1) == ["middle"]  # the pixel zone stayed where it was drawn
    await s.walk(2, steps((960, 400), (960, 700), 11))  # down across y = 540
    assert crossings(s.events) == [("half", "in", 2)]


async def test_zone_and_line_classes_count_only_those_classes() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE, "classes": [2]}],
               lines=[{"name": "door", "points": ACROSS, "classes": [2]}])
    await s.walk(1, steps((300, 250), (300, 350), 11))  # class 0 (person): in the bay, across
    assert s.events == []


async def test_prometheus_shows_occupancy_zone_events_and_crossings_from_the_stats_registry() -> None:
    from prometheus_client import generate_latest

    from streamer.core.stats import StatsRegistry
    from streamer.metrics.service import MetricsService
    from tests.metrics.conftest import Scrape

    s = script(zones=[{"name": "bay", "points": SQUARE}], lines=[{"name": "door", "points": ACROSS}])
    registry = StatsRegistry()
    for kind, stats in s.stage.registered_stats().items():  # what the pipeline does at start
        registry.register(kind, s.stage.name, stats)
    settings = config()
    exporter = MetricsService(settings, registry).prometheus
    before = Scrape.parse(generate_latest(exporter.registry).decode())
    assert before.value("streamer_zone_occupancy", camera=CAMERA, zone="bay") == 0
    assert before.value("streamer_line_crossings_total", camera=CAMERA, line="door",
                        direction="out") == 0  # every configured series exists from the start
    await s.walk(1, steps((300, 250), (300, 350), 11))  # into the bay and down across the door
    after = Scrape.parse(generate_latest(exporter.registry).decode())
    assert after.value("streamer_zone_occupancy", camera=CAMERA, zone="bay") == 1
    assert after.value("streamer_zone_events_total", camera=CAMERA, zone="bay",
                       event="zone_enter") == 1
    assert after.value("streamer_line_crossings_total", camera=CAMERA, line="door",
                       direction="in") == 1


async def test_zones_and_lines_follow_a_camera_configured_at_runtime() -> None:
    """A camera added or changed through the API brings its zones and lines; old ones go."""
    s = script()  # started without any zone or line
    assert await s.walk(1, [(300, 100), (300, 500)]) == []
    with_line = config(lines=[{"name": "gate", "points": ACROSS}]).cameras[0]
    s.stage.forget_camera(CAMERA)
    s.stage.configure_camera(with_line)
    crossed = await s.walk(2, [(300, 100), (300, 200), (300, 400), (300, 500)])
    assert crossings(crossed) == [("gate", "in", 2)]
    s.stage.forget_camera(CAMERA)
    s.stage.configure_camera(config().cameras[0])  # changed again: no line any more
    assert await s.walk(3, [(300, 100), (300, 200), (300, 400), (300, 500)]) == []


async def test_a_zone_or_line_no_longer_configured_stops_being_reported() -> None:
    s = script(zones=[{"name": "bay", "points": SQUARE, "exit_after_s": 0.0}])
    await s.walk(1, [(300, 300)])
    assert s.stage.stats.occupancy[(CAMERA, "bay")] == 1
    changed = config(zones=[{"name": "kerb", "points": [[0, 500], [300, 500], [300, 600]]}],
                     lines=[{"name": "door", "points": ACROSS}]).cameras[0]
    s.stage.forget_camera(CAMERA)  # the camera stops (its tracks end) ...
    s.stage.configure_camera(changed)  # ... and starts again with the new zones and lines
    assert (CAMERA, "bay") not in s.stage.stats.occupancy, "a removed zone is no longer reported"
    assert s.stage.stats.occupancy[(CAMERA, "kerb")] == 0
    assert s.stage.stats.line_crossings[(CAMERA, "door", "in")] == 0
    await s.walk(2, [(240, 520), (250, 520), (260, 520)])
    assert s.stage.stats.occupancy[(CAMERA, "kerb")] == 1
