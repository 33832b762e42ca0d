"""The RTSP test camera behaves like a real camera for a PyAV reader."""

from __future__ import annotations

import itertools
import signal
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from tests.support.media import make_h264_clip, make_pattern_clip
from tests.support.rtsp import (
    REQUIRED_APT_PACKAGES,
    RtspServer,
    RtspServerFactory,
    RtspServerSettings,
    RtspServerUnavailable,
)

pytestmark = pytest.mark.timeout(90)

READER_OPTIONS = {"rtsp_transport": "tcp", "timeout": "1500000"}
"""How the service opens cameras (see FACTS.md): TCP, 1.5 s socket timeout."""
CLIP_FPS = 30
STREET_FRAMES = 30
"""One second of footage at CLIP_FPS: short enough that reads cross a loop boundary."""
FRAMES_TO_READ = 20
MAX_FRAMES_AFTER_CAMERA_LOSS = CLIP_FPS
"""A reader may still drain what was in flight, but not a second's worth of new frames."""


@dataclass(frozen=True)
class Clip:
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class DecodedFrame:
    width: int
    height: int
    pts: int | None


@pytest.fixture(scope="module")
def street_clip(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Clip:
    source = assets / "videos" / "vtest.avi"
    if not source.is_file():
        pytest.fail(f"missing test footage {source} (see ASSETS.md in the assets folder)")
    destination = tmp_path_factory.mktemp("rtsp") / "street.mp4"
    make_h264_clip(source, destination, max_frames=STREET_FRAMES, gop=10, fps=CLIP_FPS)
    return Clip(destination, width=768, height=576)


@pytest.fixture(scope="module")
def pattern_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    destination = tmp_path_factory.mktemp("rtsp") / "pattern.mp4"
    make_pattern_clip(destination, width=320, height=240, frames=15, fps=CLIP_FPS, gop=5)
    return Clip(destination, width=320, height=240)


def read_frames(url: str, count: int) -> list[DecodedFrame]:
    with av.open(url, options=READER_OPTIONS) as container:
        return [
            DecodedFrame(frame.width, frame.height, frame.pts)
            for frame in itertools.islice(container.decode(video=0), count)
        ]


def timestamps(frames: list[DecodedFrame]) -> list[int]:
    # FFmpeg cannot time the very first frame of an RTSP stream before the first RTCP report.
    return [frame.pts for frame in frames if frame.pts is not None]


def test_serves_the_clip_in_a_loop_with_timestamps_that_keep_increasing(
    rtsp_server_factory: RtspServerFactory, street_clip: Clip
) -> None:
    camera = rtsp_server_factory({"/street": street_clip.path})
    frames_past_one_loop = STREET_FRAMES + FRAMES_TO_READ

    frames = read_frames(camera.url("/street"), frames_past_one_loop)

    assert len(frames) == frames_past_one_loop
    assert {(f.width, f.height) for f in frames} == {(street_clip.width, street_clip.height)}
    pts = timestamps(frames)
    assert len(pts) >= frames_past_one_loop - 1
    assert all(later > earlier for earlier, later in itertools.pairwise(pts)), pts


def test_camera_that_goes_away_ends_the_stream_and_serves_again_once_back(
    street_clip: Clip,
) -> None:
    with RtspServer({"/cam1": street_clip.path}) as camera:
        url = camera.url("/cam1")
        with av.open(url, options=READER_OPTIONS) as container:
            frames = container.decode(video=0)
            assert len(list(itertools.islice(frames, 5))) == 5

            camera.stop()
            frames_after_loss = 0
            try:
                for _frame in frames:
                    frames_after_loss += 1
                    if frames_after_loss > MAX_FRAMES_AFTER_CAMERA_LOSS:
                        break
            except av.FFmpegError:
                pass  # a read timeout is as good as the end of the stream
        assert frames_after_loss <= MAX_FRAMES_AFTER_CAMERA_LOSS

        with pytest.raises(ConnectionRefusedError):
            av.open(url, options=READER_OPTIONS)

        camera.start()
        assert len(read_frames(url, FRAMES_TO_READ)) == FRAMES_TO_READ


def test_each_mount_serves_its_own_clip_to_concurrent_readers(
    rtsp_server_factory: RtspServerFactory, street_clip: Clip, pattern_clip: Clip
) -> None:
    clips = {"/street": street_clip, "/pattern": pattern_clip}
    camera = rtsp_server_factory({mount: clip.path for mount, clip in clips.items()})

    with ThreadPoolExecutor(max_workers=len(clips)) as readers:
        reads = {mount: readers.submit(read_frames, camera.url(mount), FRAMES_TO_READ) for mount in clips}
        frames_by_mount = {mount: read.result() for mount, read in reads.items()}

    for mount, clip in clips.items():
        frames = frames_by_mount[mount]
        assert len(frames) == FRAMES_TO_READ, mount
        assert {(f.width, f.height) for f in frames} == {(clip.width, clip.height)}, mount


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_server_shuts_down_cleanly_when_asked(pattern_clip: Clip, stop_signal: signal.Signals) -> None:
    camera = RtspServer({"/cam1": pattern_clip.path})
    camera.start()

    assert camera.terminate(stop_signal) == 0


def test_missing_gstreamer_bindings_name_the_packages_to_install(tmp_path: Path, pattern_clip: Clip) -> None:
    # Debian's python3 without site-packages cannot import gi, like a machine without python3-gi.
    python_without_gi = tmp_path / "python3-without-gi"
    python_without_gi.write_text('#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n')
    python_without_gi.chmod(python_without_gi.stat().st_mode | stat.S_IXUSR)
    camera = RtspServer(
        {"/cam1": pattern_clip.path}, settings=RtspServerSettings(interpreter=python_without_gi)
    )

    with pytest.raises(RtspServerUnavailable) as raised:
        camera.start()

    assert REQUIRED_APT_PACKAGES in str(raised.value)
