"""Camera sources: files, pacing, frame-rate cap, the latest-frame handoff and reconnects."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from streamer.config import CameraConfig, ReconnectConfig
from streamer.core.stats import CameraState
from streamer.sources.camera import CameraSource, ffmpeg_whitelists
from tests.support.listeners import FileServer

CLIP_FRAMES = 200  # sample_videos/vtest_pedestrians.mp4: 200 frames at 10 fps
FAST_RECONNECT = ReconnectConfig(initial_delay_s=0.05, max_delay_s=0.2, healthy_after_s=5)


def camera(url: str | Path, **overrides: object) -> CameraConfig:
    return CameraConfig(name=overrides.pop("name", "cam"), url=str(url), **overrides)  # type: ignore[arg-type]


async def drain(source: CameraSource, limit: int = 10_000) -> list[int]:
    indices = []
    while len(indices) < limit:
        frame = await source.next_frame()
        if frame is None:
            break
        indices.append(frame.index)
    return indices


async def test_file_played_fast_delivers_every_frame_then_finishes(sample_clip: Path) -> None:
    statuses: list[CameraState] = []
    source = CameraSource(
        camera(sample_clip, pacing="fast"), on_status=lambda _n, s, _d: statuses.append(s)
    )
    source.start()
    seen = await drain(source)
    await source.stop()
    # a file played fast waits for the pipeline: every frame, in order, none dropped
    assert seen == list(range(1, CLIP_FRAMES + 1))
    assert source.stats.dropped == 0
    assert statuses[-1] == CameraState.FINISHED
    assert source.stats.reconnects == 0


async def test_looping_file_keeps_going_past_its_end(sample_clip: Path) -> None:
    source = CameraSource(camera(sample_clip, pacing="fast", loop=True))
    source.start()
    seen = await drain(source, limit=5)
    while source.stats.decoded <= CLIP_FRAMES * 2:
        await source.next_frame()
    await source.stop()
    assert len(seen) == 5
    assert source.stats.reconnects == 0


async def test_max_fps_caps_frames_in_video_time(sample_clip: Path) -> None:
    # 10 fps clip capped at 2.5 fps: every 4th frame is kept.
    source = CameraSource(camera(sample_clip, pacing="fast", max_fps=2.5))
    source.start()
    seen = await drain(source)
    await source.stop()
    assert seen == list(range(1, CLIP_FRAMES + 1, 4))
    assert source.stats.skipped == CLIP_FRAMES - len(seen)


async def test_realtime_pacing_follows_the_file_frame_rate(sample_clip: Path) -> None:
    source = CameraSource(camera(sample_clip, pacing="realtime"))
    source.start()
    await source.next_frame()
    started = time.monotonic()
    await asyncio.sleep(1.0)
    decoded = source.stats.decoded
    elapsed = time.monotonic() - started
    await source.stop()
    # a 10 fps file played in real time: about 10 frames a second, not hundreds
    assert decoded <= 10 * (elapsed + 1) + 2


async def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(sample_clip: Path) -> None:
    source = CameraSource(camera(sample_clip, pacing="realtime"))
    source.start()
    first = await source.next_frame()
    await asyncio.sleep(0.5)  # the consumer is busy; the live-like decoder keeps going
    latest = await source.next_frame()
    await source.stop()
    assert first is not None and latest is not None
    assert latest.index > first.index + 1
    assert source.stats.dropped >= latest.index - first.index - 1


async def test_dead_camera_reconnects_with_backoff_and_never_blocks_another(sample_clip: Path) -> None:
    statuses: list[tuple[str, CameraState]] = []

    def remember(name: str, status: CameraState, _detail: str | None) -> None:
        statuses.append((name, status))

    dead = CameraSource(
        camera("rtsp://user:pw@127.0.0.1:9/none", name="dead", reconnect=FAST_RECONNECT,
               open_timeout_s=1, read_timeout_s=1),
        on_status=remember,
    )
    alive = CameraSource(camera(sample_clip, name="alive", pacing="fast"), on_status=remember)
    dead.start()
    alive.start()
    frames = await drain(alive)
    await asyncio.sleep(0.5)
    await dead.stop()
    await alive.stop()
    assert frames[-1] == CLIP_FRAMES
    assert dead.stats.reconnects >= 2
    assert ("dead", CameraState.BACKOFF) in statuses
    assert dead.stats.last_error is not None and "pw" not in dead.stats.last_error
    assert ("alive", CameraState.FINISHED) in statuses


async def test_missing_file_is_retried_not_fatal(tmp_path: Path) -> None:
    source = CameraSource(camera(tmp_path / "later.mp4", reconnect=FAST_RECONNECT))
    source.start()
    await asyncio.sleep(0.4)
    await source.stop()
    assert source.stats.reconnects >= 1
    assert source.stats.last_error and "later.mp4" in source.stats.last_error


async def test_the_full_size_picture_is_made_on_first_use_and_equals_the_decoders(
    sample_clip: Path,
) -> None:
    """Without stages that read it, the camera hands over YUV planes and makes the BGR picture
    only when asked; it is the picture FFmpeg's own conversion gives, made once."""
    import av
    import numpy as np

    with av.open(str(sample_clip)) as container:
        expected = [f.to_ndarray(format="bgr24") for _, f in zip(range(3), container.decode(video=0))]
    source = CameraSource(camera(sample_clip, pacing="fast"), convert_in_thread=False)
    source.start()
    frames = [await source.next_frame() for _ in range(3)]
    await source.stop()
    for frame, picture in zip(frames, expected):
        assert frame is not None and not frame.has_image
        assert (frame.width, frame.height) == (768, 576)
        assert frame.yuv420 is not None and frame.yuv420[0].shape == (576, 768)
        assert np.array_equal(frame.image, picture)
        assert frame.has_image and frame.image is frame.image  # converted once
    eager = CameraSource(camera(sample_clip, pacing="fast"))
    eager.start()
    first = await eager.next_frame()
    await eager.stop()
    assert first is not None and first.has_image and np.array_equal(first.image, expected[0])


# -- what FFmpeg may open: the scheme's protocols and video formats only -------------------------------

TEXT = "root:x:0:0:root:/root:/bin/bash\nOPERATOR-ONLY-TEXT\n"


async def first_state(source: CameraSource, timeout_s: float = 10.0) -> CameraState:
    """The first state other than connecting (streaming: a picture came out of it)."""
    source.start()
    deadline = time.monotonic() + timeout_s
    try:
        while source.status == CameraState.CONNECTING:
            assert time.monotonic() < deadline, "no state within the timeout"
            await asyncio.sleep(0.02)
        return source.status
    finally:
        await source.stop()


async def test_text_pictures_and_file_lists_are_no_camera(tmp_path: Path, assets: Path) -> None:
    """Previously FFmpeg rendered a text file as video (tty) and opened a picture (png_pipe)."""
    (tmp_path / "notes.asc").write_text(TEXT)
    (tmp_path / "list.ffconcat").write_text("ffconcat version 1.0\nfile 'notes.asc'\n")
    for path in (tmp_path / "notes.asc", assets / "images" / "astronaut.png", tmp_path / "list.ffconcat"):
        source = CameraSource(camera(path, reconnect=ReconnectConfig(initial_delay_s=60)))
        assert await first_state(source) == CameraState.FAILED, path.name
        assert source.stats.decoded == 0


async def test_a_stream_is_read_only_with_its_schemes_protocols_and_formats(tmp_path: Path) -> None:
    """An http camera serving text is refused (tty), and what an RTSP camera's FFmpeg may open
    excludes http, file, concat and tty whatever the server answers."""
    (tmp_path / "notes.asc").write_text(TEXT)
    (tmp_path / "list.ffconcat").write_text("ffconcat version 1.0\nfile 'notes.asc'\n")
    with FileServer(tmp_path) as web:
        source = CameraSource(camera(web.url("notes.asc"), reconnect=ReconnectConfig(initial_delay_s=60)))
        assert await first_state(source) == CameraState.FAILED
        assert source.stats.decoded == 0
        protocols, formats = ffmpeg_whitelists("rtsp")
        options = {"protocol_whitelist": protocols, "format_whitelist": formats}
        for url in (web.url("notes.asc"), str(tmp_path / "notes.asc"), f"file:{tmp_path / 'notes.asc'}",
                    str(tmp_path / "list.ffconcat"), f"concat:{tmp_path / 'notes.asc'}"):
            with pytest.raises(av.error.FFmpegError):
                av.open(url, options=options, timeout=(2, 2)).close()
