"""The motion detector and gate on real footage: the sample clip's street, empty 80% of the time
with sensor noise, people spliced in (streamer/benchmarks/footage.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from streamer.benchmarks.footage import IdleFootage, rotated
from streamer.config import CameraConfig, MotionConfig
from streamer.core.frames import Frame
from streamer.core.stats import CameraStats
from streamer.sources.camera import yuv420_planes
from streamer.sources.motion import MotionDetector, MotionGate, gated_prepare, needs_detection

GHOST_FRAMES = 30  # after people vanish, their trace fades from the background within this


def frames_of(footage: IdleFootage) -> Iterator[tuple[int, np.ndarray]]:
    with av.open(str(footage.path)) as container:
        for index, frame in enumerate(container.decode(video=0), start=1):
            yield index, frame.to_ndarray(format="bgr24")


def quiet_frames(footage: IdleFootage) -> set[int]:
    """Idle frames away from the ghosts people leave: the empty street with noise only."""
    ends = [last for _first, last in footage.busy]
    return {
        index for index in range(2, footage.frames + 1)
        if not footage.has_people(index) and not any(0 < index - end <= GHOST_FRAMES for end in ends)
    }


@pytest.fixture(scope="module")
def motion_areas(idle_footage: IdleFootage) -> dict[int, float]:
    detector = MotionDetector(MotionConfig())
    return {index: detector.measure(image) for index, image in frames_of(idle_footage)}


def test_the_footage_has_people_a_fifth_of_the_time(idle_footage: IdleFootage) -> None:
    assert idle_footage.frames == 600 and idle_footage.fps == 10
    assert idle_footage.busy_share == pytest.approx(0.2)
    assert idle_footage.path.is_file() and idle_footage.path.stat().st_size > 100_000


def test_no_motion_in_the_empty_noisy_street(
    idle_footage: IdleFootage, motion_areas: dict[int, float]
) -> None:
    quiet = quiet_frames(idle_footage)
    assert len(quiet) > 300
    moving = sorted(index for index in quiet if motion_areas[index] > 0)
    assert moving == [], f"motion found in empty frames {moving[:10]}"


def test_motion_in_every_frame_with_people(
    idle_footage: IdleFootage, motion_areas: dict[int, float]
) -> None:
    busy = [index for index in motion_areas if idle_footage.has_people(index)]
    assert len(busy) == 120
    still = [index for index in busy if motion_areas[index] == 0]
    assert still == [], f"no motion found in frames with people walking: {still[:10]}"
    # people are a small part of the picture, not a lighting change
    assert all(0 < motion_areas[index] < 0.3 for index in busy)


def test_a_mask_removes_the_motion_in_its_region(idle_footage: IdleFootage) -> None:
    """The first group of people walks in a region; masked (in fractions or in pixels of the
    768x576 frame, the same polygon), their motion no longer counts; elsewhere it still does."""
    first, last = idle_footage.busy[0]
    width, height = idle_footage.width, idle_footage.height
    where = MotionDetector(MotionConfig())
    union: np.ndarray | None = None
    for index, image in frames_of(idle_footage):
        if index > last:
            break
        where.measure(image)
        if index >= first:
            grey = where.grey(image)
            moving = np.abs(grey.astype(int) - where.background_image().astype(int)) >= 10
            union = moving if union is None else union | moving
    assert union is not None and union.any()
    rows, cols = np.nonzero(union)
    small_h, small_w = union.shape
    x0, x1 = max(0, cols.min() - 3) / small_w, min(small_w, cols.max() + 4) / small_w
    y0, y1 = max(0, rows.min() - 3) / small_h, min(small_h, rows.max() + 4) / small_h
    fractions = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    pixels = [(x * width, y * height) for x, y in fractions]
    assert x1 - x0 < 0.9 or y1 - y0 < 0.9, "the people must not cover the whole picture"

    for polygon in (fractions, pixels):
        masked = MotionDetector(MotionConfig(masks=[polygon]))
        areas = {index: masked.measure(image) for index, image in frames_of(idle_footage)}
        assert [i for i in range(first, last + 1) if areas[i] > 0] == [], polygon
    # outside it, people still move: some later group walks somewhere else
    later = [i for first_i, last_i in idle_footage.busy[1:] for i in range(first_i, last_i + 1)]
    assert any(areas[i] > 0 for i in later)


def test_the_gate_detects_motion_and_once_a_second_without(idle_footage: IdleFootage) -> None:
    stats = CameraStats("street", str(idle_footage.path), source_fps=idle_footage.fps)
    gate = MotionGate(MotionConfig(keepalive_s=1.0), stats)
    prepared: list[int] = []
    hook = gated_prepare(gate, lambda frame: prepared.append(frame.index))
    detected = []
    for index, image in frames_of(idle_footage):
        frame = Frame("street", index, time.time(), time.monotonic(), image)
        hook(frame)
        if needs_detection(frame):
            detected.append(index)
        assert "motion" in frame.timings.seconds
    assert detected == prepared, "only frames going to the detector are prepared for it"
    busy = [i for i in range(1, idle_footage.frames + 1) if idle_footage.has_people(i)]
    assert set(busy) <= set(detected), "every frame with people is detected"
    quiet = sorted(quiet_frames(idle_footage))
    quiet_detected = [i for i in quiet if i in detected]
    # keep-alive: one frame in ten (1 s at 10 fps), no more
    assert len(quiet) // 10 - 2 <= len(quiet_detected) <= len(quiet) // 10 + 6
    gaps = np.diff(detected)
    assert gaps.max() <= 10, "never more than a second without detection"
    assert detected[0] == 1, "the first frame is detected"
    assert stats.motion_frames >= len(busy)
    assert len(detected) < 0.45 * idle_footage.frames


def test_an_empty_scene_is_looked_at_once_in_ten_seconds(idle_footage: IdleFootage) -> None:
    """With no track open, the keep-alive slows to `idle_keepalive_s`; motion is still detected."""
    stats = CameraStats("street", str(idle_footage.path), source_fps=idle_footage.fps)
    gate = MotionGate(MotionConfig(keepalive_s=1.0, idle_keepalive_s=10.0), stats)
    gate.set_tracking(False)
    detected = []
    for index, image in frames_of(idle_footage):
        if gate.inspect(Frame("street", index, time.time(), time.monotonic(), image)).detect:
            detected.append(index)
    busy = {i for i in range(1, idle_footage.frames + 1) if idle_footage.has_people(i)}
    assert busy <= set(detected)
    quiet = quiet_frames(idle_footage)
    quiet_detected = [i for i in detected if i in quiet]
    assert 1 <= len(quiet_detected) <= len(quiet) // 100 + 4, quiet_detected
    assert max(np.diff(detected)) <= 100


@pytest.mark.parametrize(
    ("url", "enabled", "gated"),
    [
        ("rtsp://cam.local/stream", None, True),
        ("https://cam.local/live.m3u8", None, True),
        ("/videos/lobby.mp4", None, False),
        ("/videos/lobby.mp4", True, True),
        ("rtsp://cam.local/stream", False, False),
    ],
)
def test_gating_is_on_for_live_cameras_and_off_for_files_by_default(
    url: str, enabled: bool | None, gated: bool
) -> None:
    camera = CameraConfig.model_validate({"name": "c", "url": url, "motion": {"enabled": enabled}})
    assert camera.motion_gated is gated


def test_a_mask_with_too_few_points_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="mask 0: a polygon needs at least 3 points, got 2"):
        MotionConfig.model_validate({"masks": [[[0, 0], [1, 1]]]})


def test_a_rotation_of_the_footage_is_the_same_frames_starting_later(
    idle_footage: IdleFootage,
) -> None:
    later = rotated(idle_footage, 30)
    assert later.path != idle_footage.path and later.frames == idle_footage.frames
    assert later.busy[0] == (91, 120)
    def source_of(index: int) -> int:
        return (index - 1 + 30) % idle_footage.frames + 1

    sampled = {index for index in range(1, later.frames + 1) if index % 7 == 0 or index > 565}
    originals = {source_of(i) for i in sampled}
    original = {i: image for i, image in frames_of(idle_footage) if i in originals}
    compared = 0
    for index, image in frames_of(later):
        assert later.has_people(index) == idle_footage.has_people(source_of(index))
        if index in sampled:
            assert np.array_equal(image, original[source_of(index)]), index
            compared += 1
    assert compared == len(sampled)


def test_the_gate_reads_the_luma_plane_and_never_makes_the_colour_picture(
    idle_footage: IdleFootage, motion_areas: dict[int, float]
) -> None:
    """Frames as the camera hands them over (YUV planes, colour made on demand): the verdicts
    are those taken on the BGR picture, and the full-size conversion is never paid for them."""
    stats = CameraStats("street", str(idle_footage.path), source_fps=idle_footage.fps)
    gate = MotionGate(MotionConfig(keepalive_s=1.0), stats)
    made: list[int] = []
    luma_motion: dict[int, bool] = {}
    with av.open(str(idle_footage.path)) as container:
        for index, decoded in enumerate(container.decode(video=0), start=1):
            frame = Frame(
                "street", index, time.time(), time.monotonic(),
                convert=lambda decoded=decoded, index=index: (
                    made.append(index) or decoded.to_ndarray(format="bgr24")
                ),
                size=(decoded.width, decoded.height),
                yuv420=yuv420_planes(decoded),
            )
            luma_motion[index] = gate.inspect(frame).motion
            assert not frame.has_image
    assert made == []
    bgr_motion = {index: area > 0 for index, area in motion_areas.items()}
    differing = [index for index in bgr_motion if bgr_motion[index] != luma_motion[index]]
    assert len(differing) <= 0.01 * len(bgr_motion), differing
    busy = [i for i in luma_motion if idle_footage.has_people(i)]
    assert all(luma_motion[i] for i in busy)
    assert not any(luma_motion[i] for i in quiet_frames(idle_footage))
