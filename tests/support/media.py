"""H.264 MP4 test clips made with PyAV, so that tests and CI need no system ffmpeg.

Clips are camera-like: a fixed GOP with a keyframe every `gop` frames, no B-frames (live
cameras send frames in display order, so decoded timestamps only ever increase), yuv420p, MP4
container. GStreamer's qtdemux/h264parse (tests/support/rtsp_server.py) accept them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ClipEncoding:
    """How test clips are encoded."""

    preset: str = "veryfast"
    """libx264 speed preset: clip creation must stay cheap on a 2-core CI machine."""
    crf: int = 23
    """libx264 constant rate factor (lower is better quality, larger files)."""
    pixel_format: str = "yuv420p"
    """The pixel format every H.264 decoder and GStreamer's h264parse handle."""


DEFAULT_ENCODING = ClipEncoding()


class _H264ClipWriter:
    """Encodes frames one by one into a camera-like H.264 MP4."""

    def __init__(
        self,
        dst: Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        gop: int,
        encoding: ClipEncoding,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"{encoding.pixel_format} needs even dimensions, got {width}x{height}")
        if gop < 1:
            raise ValueError(f"gop must be at least 1, got {gop}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        self._pixel_format = encoding.pixel_format
        self._container = av.open(str(dst), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = encoding.pixel_format
        self._stream.codec_context.gop_size = gop
        self._stream.codec_context.max_b_frames = 0
        self._stream.options = {
            "preset": encoding.preset,
            "crf": str(encoding.crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        self._time_base = 1 / fps
        self._frames_written = 0

    def __enter__(self) -> _H264ClipWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._container.mux(self._stream.encode(None))
        self._container.close()

    @property
    def frames_written(self) -> int:
        return self._frames_written

    def write(self, frame: av.VideoFrame) -> None:
        """Re-times frame to the clip's constant frame rate and encodes it."""
        converted = frame.reformat(
            width=self._stream.width, height=self._stream.height, format=self._pixel_format
        )
        converted.pts = self._frames_written
        converted.time_base = self._time_base
        self._container.mux(self._stream.encode(converted))
        self._frames_written += 1


def make_h264_clip(
    src: Path,
    dst: Path,
    max_frames: int | None,
    gop: int = 10,
    fps: int | None = None,
    encoding: ClipEncoding = DEFAULT_ENCODING,
) -> Path:
    """Re-encodes the first max_frames frames of src (all when None) as a camera-like clip.

    fps defaults to the source's frame rate; a different value re-times the frames (the clip
    plays faster or slower) rather than dropping or repeating any.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    with av.open(str(src)) as source:
        video = source.streams.video[0]
        rate = Fraction(fps) if fps is not None else video.average_rate
        if rate is None or rate <= 0:
            raise ValueError(f"{src} has no usable frame rate: pass fps explicitly")
        width = video.codec_context.width - video.codec_context.width % 2
        height = video.codec_context.height - video.codec_context.height % 2
        with _H264ClipWriter(dst, width=width, height=height, fps=rate, gop=gop, encoding=encoding) as writer:
            for frame in source.decode(video):
                writer.write(frame)
                if max_frames is not None and writer.frames_written >= max_frames:
                    break
    if writer.frames_written == 0:
        raise ValueError(f"{src} has no decodable video frames")
    return dst


def pattern_frames(width: int, height: int, count: int) -> Iterator[npt.NDArray[np.uint8]]:
    """BGR frames of a diagonal gradient that shifts one step per frame, so consecutive
    frames differ and a frozen or repeated frame is visible."""
    rows = np.arange(height, dtype=np.int32)[:, None]
    columns = np.arange(width, dtype=np.int32)[None, :]
    for index in range(count):
        phase = (rows + columns + 8 * index) % 256
        yield np.stack([phase, 255 - phase, (phase * 2) % 256], axis=-1).astype(np.uint8)


def make_pattern_clip(
    dst: Path,
    *,
    width: int,
    height: int,
    frames: int,
    fps: int,
    gop: int = 10,
    encoding: ClipEncoding = DEFAULT_ENCODING,
) -> Path:
    """A synthetic camera-like clip of any size, for tests that need no real footage."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    with _H264ClipWriter(
        dst, width=width, height=height, fps=Fraction(fps), gop=gop, encoding=encoding
    ) as writer:
        for image in pattern_frames(width, height, frames):
            writer.write(av.VideoFrame.from_ndarray(image, format="bgr24"))
    return dst
