"""Video timestamps that jump: a new time base, never a reason to skip frames or to stall.

Real clips: two MPEG-TS segments joined byte for byte (as a recorder or `cat` does, timestamps
not rewritten: the second segment starts back at the first one's start), and a segment followed
by a copy remuxed 100 s later. Every frame must be handed on, with and without a `max_fps` cap,
and real-time pacing must neither burst through the segment that went back nor wait out the gap.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from streamer.config import CameraConfig
from streamer.core.frames import Frame
from streamer.sources.camera import CameraSource
from tests.support.media import make_pattern_clip, pattern_index

pytestmark = pytest.mark.timeout(60)

WIDTH, HEIGHT, GOP = 64, 48, 5
SEGMENT_FRAMES = 20
FPS = 10
PACED_FPS = 25  # real-time tests play 2 x 0.8 s
LEAP_S = 100.0


def segment(folder: Path, fps: int = FPS) -> Path:
    return make_pattern_clip(
        folder / f"segment-{fps}.ts", width=WIDTH, height=HEIGHT, frames=SEGMENT_FRAMES, fps=fps,
        gop=GOP, container_format="mpegts",
    )


def joined(folder: Path, first: Path, second: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


def shifted(src: Path, dst: Path, offset_s: float) -> Path:
    """The same packets, remuxed with every timestamp `offset_s` later."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mpegts") as target:
        video = source.streams.video[0]
        out = target.add_stream_from_template(video)
        assert video.time_base is not None
        shift = round(offset_s / video.time_base)
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's final empty packet
                continue
            assert packet.pts is not None
            packet.pts += shift
            packet.dts += shift
            packet.stream = out
            target.mux(packet)
    return dst


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0) if f.time is not None]


def back_in_time_clip(folder: Path, fps: int = FPS) -> Path:
    """40 frames whose timestamps go back to the start at frame 21."""
    part = segment(folder, fps)
    path = joined(folder, part, part, f"back-{fps}.ts")
    times = frame_times(path)
    assert len(times) == 2 * SEGMENT_FRAMES and times[SEGMENT_FRAMES] < times[SEGMENT_FRAMES - 1]
    return path


def leap_ahead_clip(folder: Path, fps: int = FPS) -> Path:
    """40 frames whose timestamps leap 100 s ahead at frame 21."""
    part = segment(folder, fps)
    later = shifted(part, folder / f"later-{fps}.ts", LEAP_S)
    path = joined(folder, part, later, f"ahead-{fps}.ts")
    times = frame_times(path)
    assert len(times) == 2 * SEGMENT_FRAMES and times[SEGMENT_FRAMES] > times[SEGMENT_FRAMES - 1] + 90
    return path


@pytest.fixture
def back_in_time(tmp_path: Path) -> Path:
    return back_in_time_clip(tmp_path)


@pytest.fixture
def leap_ahead(tmp_path: Path) -> Path:
    return leap_ahead_clip(tmp_path)


def camera(path: Path, **overrides: object) -> CameraConfig:
    return CameraConfig(name="cam", url=str(path), **overrides)  # type: ignore[arg-type]


async def play(config: CameraConfig) -> tuple[list[Frame], CameraSource]:
    source = CameraSource(config)
    source.start()
    frames = []
    try:
        while (frame := await source.next_frame()) is not None:
            frames.append(frame)
    finally:  # also when timed out: the decoding thread must not outlive the test
        await source.stop()
    return frames, source


async def test_timestamps_going_back_skip_no_frame(back_in_time: Path) -> None:
    frames, source = await play(camera(back_in_time, pacing="fast"))
    assert [f.index for f in frames] == list(range(1, 2 * SEGMENT_FRAMES + 1))
    assert source.stats.skipped == 0
    # the pictures are the real ones: the pattern starts over with the second segment
    shown = [pattern_index(f.image, SEGMENT_FRAMES) for f in frames]
    assert shown == list(range(SEGMENT_FRAMES)) * 2


async def test_max_fps_restarts_its_count_when_timestamps_go_back(back_in_time: Path) -> None:
    # 10 fps capped at 5: every other frame of each segment, the second one from its first frame
    frames, source = await play(camera(back_in_time, pacing="fast", max_fps=5))
    kept = [*range(1, SEGMENT_FRAMES + 1, 2), *range(SEGMENT_FRAMES + 1, 2 * SEGMENT_FRAMES + 1, 2)]
    assert [f.index for f in frames] == kept
    assert source.stats.skipped == 2 * SEGMENT_FRAMES - len(kept)


async def test_max_fps_keeps_its_rate_across_a_leap_ahead(leap_ahead: Path) -> None:
    frames, source = await play(camera(leap_ahead, pacing="fast", max_fps=5))
    kept = [*range(1, SEGMENT_FRAMES + 1, 2), *range(SEGMENT_FRAMES + 1, 2 * SEGMENT_FRAMES + 1, 2)]
    assert [f.index for f in frames] == kept
    assert source.stats.skipped == 2 * SEGMENT_FRAMES - len(kept)


async def test_realtime_pacing_plays_on_after_timestamps_go_back(tmp_path: Path) -> None:
    """The second segment is paced too, not played as fast as it decodes."""
    frames, _source = await play(camera(back_in_time_clip(tmp_path, PACED_FPS), pacing="realtime"))
    assert len(frames) >= 2 * SEGMENT_FRAMES - 2  # the consumer keeps up; a drop or two at most
    played_s = frames[-1].captured_monotonic - frames[0].captured_monotonic
    expected_s = (2 * SEGMENT_FRAMES - 1) / PACED_FPS
    assert played_s >= 0.9 * expected_s, f"{played_s:.2f} s for {expected_s:.2f} s of video"


async def test_realtime_pacing_does_not_wait_out_a_leap_ahead(tmp_path: Path) -> None:
    config = camera(leap_ahead_clip(tmp_path, PACED_FPS), pacing="realtime")
    started = time.monotonic()
    frames, _source = await asyncio.wait_for(play(config), 30)
    elapsed = time.monotonic() - started
    assert frames[-1].index == 2 * SEGMENT_FRAMES
    assert elapsed < LEAP_S / 4, f"took {elapsed:.1f} s: the {LEAP_S:g} s gap was waited out"
