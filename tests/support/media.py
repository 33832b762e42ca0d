"""H.264 test clips made with PyAV, so that tests and CI need no system ffmpeg.

Clips are camera-like: a fixed GOP with a keyframe every `gop` frames, no B-frames (live
cameras send frames in display order, so decoded timestamps only ever increase), yuv420p, MP4
container by default (MPEG-TS and raw Annex-B `.h264` on request). GStreamer's qtdemux/h264parse
(tests/support/rtsp_server.py) accept them.

Broken files for the sources' tests: `corrupt_mp4_samples` and `corrupt_annexb` overwrite video
data in place, leaving the container's framing intact, so that the demuxer reads on while the
decoder rejects the damaged packets; `make_empty_clip` writes a file that holds no frame at all.
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
        container_format: str = "mp4",
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"{encoding.pixel_format} needs even dimensions, got {width}x{height}")
        if gop < 1:
            raise ValueError(f"gop must be at least 1, got {gop}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        self._pixel_format = encoding.pixel_format
        self._container = av.open(str(dst), mode="w", format=container_format)
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
    container_format: str = "mp4",
) -> Path:
    """A synthetic camera-like clip of any size, for tests that need no real footage.

    container_format: "mp4", "mpegts" (a `.ts`) or "h264" (raw Annex-B, no timestamps).
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    with _H264ClipWriter(
        dst, width=width, height=height, fps=Fraction(fps), gop=gop, encoding=encoding,
        container_format=container_format,
    ) as writer:
        for image in pattern_frames(width, height, frames):
            writer.write(av.VideoFrame.from_ndarray(image, format="bgr24"))
    return dst


def pattern_index(image: npt.NDArray[np.uint8], count: int) -> int:
    """Which of the first `count` frames of `pattern_frames` a decoded BGR image shows (the
    nearest one: decoding is lossy)."""
    height, width = image.shape[:2]
    errors = [
        float(np.abs(image.astype(np.int16) - expected.astype(np.int16)).mean())
        for expected in pattern_frames(width, height, count)
    ]
    return int(np.argmin(errors))


def video_packets(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet of a file, in demuxing order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pos, p.size) for p in container.demux(stream) if p.size and (p.pos or 0) >= 0]


def corrupt_mp4_samples(path: Path, first: int, count: int) -> Path:
    """Overwrites video samples first..first+count-1 of an MP4 in place with 0xFF bytes.

    The sample tables (moov) stay intact, so the demuxer still reads every sample; the decoder
    rejects each damaged one (its NAL length prefix is nonsense) and recovers at the next
    keyframe. count may reach past the last sample: every sample from `first` on is damaged.
    """
    data = bytearray(path.read_bytes())
    packets = video_packets(path)
    if not packets[first : first + count]:
        raise ValueError(f"{path} has {len(packets)} video samples; none from {first}")
    for offset, size in packets[first : first + count]:
        data[offset : offset + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    return path


TS_PACKET = 188
TS_SYNC = 0x47
# Start codes of IDR slices that carry no valid slice header: each one makes the H.264 parser cut
# a packet that the decoder refuses (AVERROR_INVALIDDATA), with no start code of the real stream.
BOGUS_NAL_UNITS = (b"\x00\x00\x01\x65" + b"\xff" * 12) * (TS_PACKET // 16 + 1)


def corrupt_annexb(path: Path, start: float, end: float) -> Path:
    """Overwrites the H.264 bytes between the fractions start and end of a raw Annex-B `.h264`
    or an MPEG-TS `.ts` file, in place, with bogus NAL units.

    In an MPEG-TS file only the elementary stream is overwritten: TS packet headers, adaptation
    fields and PES headers stay, so the demuxer keeps its sync and reads on.
    """
    if not 0 <= start < end <= 1:
        raise ValueError(f"need 0 <= start < end <= 1, got {start}, {end}")
    data = bytearray(path.read_bytes())
    low, high = int(len(data) * start), int(len(data) * end)
    is_ts = len(data) % TS_PACKET == 0 and all(data[o] == TS_SYNC for o in range(0, len(data), TS_PACKET))
    if not is_ts:
        span = high - low
        data[low:high] = (BOGUS_NAL_UNITS * (span // len(BOGUS_NAL_UNITS) + 1))[:span]
        path.write_bytes(bytes(data))
        return path
    video_pids = _ts_video_pids(path)
    for offset in range(low - low % TS_PACKET, high, TS_PACKET):
        header = data[offset : offset + 4]
        pid = ((header[1] & 0x1F) << 8) | header[2]
        has_payload = (header[3] >> 4) & 1
        if pid not in video_pids or not has_payload:
            continue
        payload = offset + 4
        if (header[3] >> 4) & 2:  # adaptation field first
            payload += 1 + data[payload]
        if header[1] & 0x40:  # a PES packet starts here: keep its header
            payload += 9 + data[payload + 8]
        stop = offset + TS_PACKET
        if payload < stop:
            data[payload:stop] = BOGUS_NAL_UNITS[: stop - payload]
    path.write_bytes(bytes(data))
    return path


def _ts_video_pids(path: Path) -> set[int]:
    with av.open(str(path)) as container:
        return {stream.id for stream in container.streams.video}


def make_empty_clip(dst: Path, container_format: str = "h264") -> Path:
    """A file that holds no video frame: raw Annex-B is simply empty (0 bytes; FFmpeg still opens
    it as an H.264 stream that ends at once); an "mp4" keeps a video track without samples."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if container_format == "h264":
        dst.write_bytes(b"")
        return dst
    with av.open(str(dst), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return dst
