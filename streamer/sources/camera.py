"""One camera: PyAV decoding in the camera's own thread, reconnecting on its own, never blocking others.

Decoding in a thread releases the GIL (the event loop stays responsive);
a frozen RTSP server blocks a reader forever unless PyAV's `timeout` is set; a killed server just
ends iteration. So: TCP, open/read timeouts, and every end, timeout or error becomes a reconnect
with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import av
import numpy as np

from streamer.config import CameraConfig
from streamer.core.backoff import Backoff
from streamer.core.frames import Frame
from streamer.core.interfaces import FrameSource, SourceHooks, StatusCallback
from streamer.core.redaction import redact_url
from streamer.core.stats import CameraState, CameraStats
from streamer.sources.interrupt import interruptible

log = logging.getLogger(__name__)

THREAD_JOIN_GRACE_S = 2.0
FPS_WINDOW_S = 2.0
SLOT_POLL_S = 0.1
# FFmpeg probes a stream for up to 5 s by default; a camera's H.264 needs far less (measured on
# the RTSP test server: ~2 s to open by default, ~0.3 s with 0.5 s), and reconnects get faster.
RTSP_ANALYZE_US = "1000000"
# Video timestamps that go back (segments joined without rewriting them, a camera whose clock was
# reset) or leap ahead by more than this start a new time base: the frame-rate cap and real-time
# pacing measure from there, instead of skipping every frame until the old time is reached again
# or waiting for the gap to pass.
TIMESTAMP_LEAP_S = 5.0
TIMESTAMP_EPSILON_S = 1e-6
# A camera whose keyframes come much more often than the pipeline takes its frames (a file with
# broken timestamps, a stream far faster than the detector's share) skips decoding up to the next
# keyframe while its slot is full: it would only decode frames to drop them, taking CPU from the
# detector and the other cameras. A normal camera (keyframes every second or two, frames taken
# several times a second) never skips: it would lose frames it could have had.
KEYFRAMES_PER_TAKE = 2.0
SMOOTHING = 0.2  # moving averages of the keyframe and take intervals


# The stream cannot work as configured until someone changes something: the state says `failed`
# (reconnects continue, at the backoff's pace). Other errors are `backoff`: a normal outage.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    av.error.HTTPClientError,  # 4xx: not found, unauthorized, forbidden (RTSP answers these too)
    av.error.ProtocolNotFoundError,
    av.error.DemuxerNotFoundError,
    av.error.DecoderNotFoundError,
    av.error.InvalidDataError,  # not a video stream or file
    av.error.ArgumentError,  # EINVAL: a protocol or format not on the scheme's whitelist
)


# What FFmpeg may open for each scheme: the protocols (nested ones included) and the demuxers (a
# demuxer named "mov" covers "mov,mp4,m4a,3gp,3g2,mj2"). Nothing reads text (tty), lists of other
# files (concat, hls from a file), pictures (image2, png_pipe) or devices.
VIDEO_FILE_FORMATS = "mov,matroska,avi,mpegts,flv,h264,hevc,m4v,mpeg,asf,ivf,yuv4mpegpipe"
STREAM_FORMATS = "mpegts,flv,h264,hevc,mpjpeg,mjpeg,mov,matroska"
FFMPEG_WHITELISTS: dict[str, tuple[str, str]] = {
    "file": ("file", VIDEO_FILE_FORMATS),
    "": ("file", VIDEO_FILE_FORMATS),
    "rtsp": ("tcp", "rtsp"),
    "rtsps": ("tcp,tls", "rtsp"),
    "rtmp": ("rtmp,tcp", "flv,live_flv"),
    "rtmps": ("rtmps,rtmp,tcp,tls", "flv,live_flv"),
    "http": ("http,tcp", f"{STREAM_FORMATS},hls"),
    "https": ("https,http,tcp,tls", f"{STREAM_FORMATS},hls"),
    "udp": ("udp", "mpegts,h264,hevc"),
    "srt": ("srt", "mpegts"),
}
# A file that cannot be opened says only that, on every surface: which of these it was (missing,
# unreadable, not a video) is in the service's log, for the operator.
FILE_OPEN_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    PermissionError,
    av.error.InvalidDataError,
    av.error.DemuxerNotFoundError,
    av.error.ArgumentError,  # EINVAL: FFmpeg refused the format (not on the whitelist)
)


# An open that failed after this share of open_timeout_s waited for the server, not for the data.
OPEN_TIMEOUT_SHARE = 0.9


class NoVideo(RuntimeError):
    """The stream or file holds no decodable video frame."""


@dataclass
class Attempt:
    """What one connection delivered, so the next step (loop, finish, back off) can be chosen."""

    ended: bool = False  # the stream or file came to its end (not stopped, not an error)
    frames: int = 0  # delivered by the stream: decoded, or skipped undecoded by a camera far behind
    first_frame_monotonic: float | None = None
    last_frame_monotonic: float | None = None
    error: str | None = None
    shown: str | None = None  # what the dashboard, the API and messages say, when less than `error`
    permanent: bool = False

    def delivered_for_s(self) -> float:
        if self.first_frame_monotonic is None or self.last_frame_monotonic is None:
            return 0.0
        return self.last_frame_monotonic - self.first_frame_monotonic


class LatestFrameSlot:
    """One-slot handoff: the newest frame wins, so a slow model never builds a backlog.

    A file played as fast as possible instead waits for the slot to empty (`wait_until_free`):
    dropping frames of a file gains nothing and decoding them would steal CPU from inference.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: CameraStats) -> None:
        self._loop = loop
        self._stats = stats
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)
        self._frame: Frame | None = None
        self._closed = False
        self._ready = asyncio.Event()
        self._taken_at: float | None = None
        self._take_interval_s: float | None = None

    def put(self, frame: Frame) -> None:
        """Called from the decoding thread; wakes the pipeline only when the slot was empty (a
        camera that floods frames does not wake the event loop for every frame it drops)."""
        with self._lock:
            was_empty = self._frame is None
            if not was_empty:
                self._stats.dropped += 1
            self._frame = frame
        if was_empty:
            self._loop.call_soon_threadsafe(self._ready.set)

    def waited_s(self) -> float | None:
        """How long the frame in the slot has waited for the pipeline; None when the slot is empty."""
        frame = self._frame
        return None if frame is None else time.monotonic() - frame.captured_monotonic

    @property
    def take_interval_s(self) -> float | None:
        """How often the pipeline takes a frame (moving average), None before two takes."""
        return self._take_interval_s

    def wait_until_free(self, stop: threading.Event) -> None:
        """Called from the decoding thread; blocks until the pipeline took the previous frame."""
        with self._taken:
            while self._frame is not None and not self._closed and not stop.is_set():
                self._taken.wait(SLOT_POLL_S)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> Frame | None:
        """The newest frame, or None once the source has ended and the slot is empty.

        `take_interval_s` follows the pipeline's pace only: a take that found its frame waiting
        counts, one that had to wait for the source (the source's pace) does not.
        """
        waited = False
        while True:
            with self._lock:
                frame, self._frame = self._frame, None
                closed = self._closed
                if frame is not None:
                    self._taken.notify()
            if frame is not None:
                now = time.monotonic()
                if self._taken_at is not None and not waited:
                    interval = now - self._taken_at
                    previous = self._take_interval_s
                    self._take_interval_s = (
                        interval if previous is None else previous + SMOOTHING * (interval - previous)
                    )
                self._taken_at = now
                return frame
            if closed:
                return None
            self._ready.clear()
            await self._ready.wait()
            waited = True


def open_stream(config: CameraConfig) -> Any:
    """Open a camera's stream or file the one way the service does (TCP, timeouts, short probe),
    FFmpeg restricted to the protocols and formats of the URL's scheme (`FFMPEG_WHITELISTS`)."""
    protocols, formats = ffmpeg_whitelists(config.scheme)
    options = {"protocol_whitelist": protocols, "format_whitelist": formats}
    if config.is_file:
        if not config.file_path.is_file():
            raise FileNotFoundError(f"no such file: {config.file_path}")
        return av.open(str(config.file_path), mode="r", options=options)
    options["analyzeduration"] = RTSP_ANALYZE_US
    if config.scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    started = time.monotonic()
    try:
        return av.open(
            config.url,
            mode="r",
            options=options,
            timeout=(config.open_timeout_s, config.read_timeout_s),
        )
    except av.error.InvalidDataError:
        # FFmpeg reports a server that accepts the connection but never answers, once the open
        # timeout has passed, as invalid data: it is a timeout.
        if time.monotonic() - started >= config.open_timeout_s * OPEN_TIMEOUT_SHARE:
            raise TimeoutError(
                f"no answer from the server within open_timeout_s={config.open_timeout_s:g}"
            ) from None
        raise


def ffmpeg_whitelists(scheme: str) -> tuple[str, str]:
    """(protocol_whitelist, format_whitelist) for a camera URL's scheme; FFmpeg refuses anything
    else, nested opens included (an RTSP camera cannot become http, file, concat or tty)."""
    return FFMPEG_WHITELISTS.get(scheme, FFMPEG_WHITELISTS["file"])


def probe_stream(config: CameraConfig) -> str:
    """Open the stream and decode one frame (`streamer check`); returns a short description."""
    with open_stream(config) as container:
        if not container.streams.video:
            raise NoVideo("no video stream")
        stream = container.streams.video[0]
        frame = next(container.decode(stream), None)
        if frame is None:
            raise NoVideo("no video frame could be decoded")
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        return f"{frame.width}x{frame.height} {stream.codec_context.name} {rate:.1f} fps"


def _leaped(time_s: float, previous_s: float) -> bool:
    """Whether a timestamp breaks from the previous one: back in time, or far ahead."""
    return time_s < previous_s - TIMESTAMP_EPSILON_S or time_s > previous_s + TIMESTAMP_LEAP_S


class CameraSource(FrameSource[CameraConfig]):
    """Owns the decoding thread of one camera (PyAV: files and network streams); `await
    next_frame()` from the pipeline."""

    @classmethod
    def build(cls, camera: CameraConfig, hooks: SourceHooks) -> CameraSource:
        return cls(
            camera,
            prepare=hooks.prepare,
            convert_in_thread=hooks.convert_in_thread,
            on_status=hooks.on_status,
            stats=hooks.stats,
        )

    def __init__(
        self,
        config: CameraConfig,
        *,
        prepare: Callable[[Frame], None] | None = None,
        convert_in_thread: bool = True,
        on_status: StatusCallback | None = None,
        stats: CameraStats | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.stats = stats or CameraStats(config.name, redact_url(config.url))
        self.status = CameraState.CONNECTING
        self._prepare = prepare
        self._convert_in_thread = convert_in_thread
        self._key_interval_s: float | None = None  # moving average, kept across reconnects and loops
        self._on_status = on_status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slot: LatestFrameSlot | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index = 0

    @classmethod
    def probe(cls, camera: CameraConfig) -> str:
        return probe_stream(camera)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._slot = LatestFrameSlot(self._loop, self.stats)
        self._thread = threading.Thread(target=self._run, name=f"camera:{self.name}", daemon=True)
        self._thread.start()

    async def next_frame(self) -> Frame | None:
        assert self._slot is not None, "start() first"
        return await self._slot.get()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            thread, self._thread = self._thread, None
            # FFmpeg's interrupt callback ends a blocking open or read within ~0.1 s (interrupt.py);
            # where it cannot, the read timeout does: do not hold shutdown hostage to it.
            await asyncio.to_thread(thread.join, THREAD_JOIN_GRACE_S)
        if self._slot is not None:
            self._slot.close()

    # -- decoding thread -------------------------------------------------------------------

    def _set_status(self, status: CameraState, detail: str | None = None) -> None:
        if status == self.status:
            return
        self.status = status
        self.stats.source_state = status
        self.stats.source_state_since = time.monotonic()
        if self._on_status is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._on_status, self.name, status, detail)

    def _run(self) -> None:
        self.stats.thread_id = threading.get_native_id()
        interruptible(self._stop)  # stop() ends a blocking open or read within ~0.1 s
        backoff = Backoff(self.config.reconnect)
        safe_url = redact_url(self.config.url)
        last_reason: str | None = None
        while not self._stop.is_set():
            # Reconnecting stays `backoff`/`failed` until frames flow again, and a looping file
            # reopened at its end stays `streaming`: only the first connection says `connecting`.
            attempt = self._attempt(safe_url)
            if self._stop.is_set():
                break
            if attempt.frames:
                last_reason = None  # frames flowed: the next failure is news again
            if attempt.ended and self.config.is_file:
                if attempt.frames == 0:
                    attempt.error, attempt.permanent = "no decodable video frame in the file", True
                elif not self.config.loop:
                    log.info("camera %s: end of file", self.name)
                    self._set_status(CameraState.FINISHED)
                    break
                else:
                    continue
            # Backoff measures from the frames received: a long open timeout is no success.
            if attempt.delivered_for_s() >= self.config.reconnect.healthy_after_s:
                backoff.reset()
            delay = backoff.next_delay()
            reason = attempt.error or "stream ended"
            self.stats.last_error = attempt.shown or reason
            self.stats.reconnects += 1
            self._set_status(
                CameraState.FAILED if attempt.permanent else CameraState.BACKOFF, attempt.shown or reason
            )
            # The same failure again and again is one line, not one per attempt.
            level = logging.DEBUG if reason == last_reason else logging.WARNING
            log.log(
                level, "camera %s (%s): %s; reconnecting in %.1fs (reconnect #%d)",
                self.name, safe_url, reason, delay, self.stats.reconnects,
            )
            last_reason = reason
            self._stop.wait(delay)
        if self._stop.is_set():
            self._set_status(CameraState.STOPPED)
        if self._slot is not None:
            self._slot.close()

    def _attempt(self, safe_url: str) -> Attempt:
        """Open the stream and decode until it ends, fails or the source is stopped."""
        attempt = Attempt()
        started = time.monotonic()
        try:
            with open_stream(self.config) as container:
                attempt.ended = self._decode(container, attempt)
        except Exception as exc:  # PyAV raises many types (OSError, TimeoutError, av errors)
            self.stats.errors += 1
            attempt.error = f"{type(exc).__name__}: {exc}".replace(self.config.url, safe_url)
            # FFmpeg reports an RTSP server that accepts the connection but never answers, once
            # open_timeout_s has passed, as invalid data: a stream that waited that long is out.
            waited_out = not self.config.is_file and time.monotonic() - started >= self.config.open_timeout_s
            attempt.permanent = (
                isinstance(exc, (*PERMANENT_ERRORS, NoVideo)) and attempt.frames == 0 and not waited_out
            )
            if self.config.is_file and attempt.frames == 0 and isinstance(exc, FILE_OPEN_ERRORS):
                attempt.shown = (
                    f"cannot read {self.config.file_path.name} as a video: missing, not readable "
                    "by the service, or not a video format it reads (the service's log says which)"
                )
            self.stats.last_error = attempt.shown or attempt.error
            if self.config.is_file and attempt.frames > 0:
                # A broken tail of a file ends it; replaying it would duplicate every event.
                log.warning("camera %s: file ended early: %s", self.name, attempt.error)
                attempt.ended = True
        return attempt

    def _decode(self, container: Any, attempt: Attempt) -> bool:
        """Decode until the stream ends (True) or the source is stopped (False).

        A packet that fails to decode is skipped (counted): the next keyframe recovers the picture.
        The source says `streaming` at the first decoded frame, not when the stream opens: a file
        or stream that opens but yields no frame stays `connecting`/`backoff`/`failed`.

        Packets are demuxed and decoded separately so that `decode` in a frame's timings is
        decoding work, not waiting for the network. A frame's capture time is when its packet
        was taken for decoding, after any pacing or backpressure wait.

        Timestamps that go back, or leap more than `TIMESTAMP_LEAP_S` ahead, start a new time
        base for the `max_fps` cap and for real-time pacing (joined segments, a camera's reset).
        """
        if not container.streams.video:
            raise NoVideo("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = self.config.decode_threads  # before the first decode
        if stream.average_rate:
            self.stats.source_fps = float(stream.average_rate)
        frame_s = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
        min_interval = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        realtime = self.config.is_file and self.config.pacing == "realtime"
        backpressure = self.config.is_file and self.config.pacing == "fast"
        first_packet_s: float | None = None
        last_packet_s = 0.0
        end_s = 0.0  # video time at the end of the last packet, from the first packet
        wall_start = time.monotonic()
        last_kept_s = -float("inf")
        window_start, window_frames = time.monotonic(), 0
        last_key_monotonic: float | None = None
        skipping = False
        assert self._slot is not None
        for packet in container.demux(stream):
            if self._stop.is_set():
                return False
            if realtime and packet.dts is not None and packet.time_base is not None:
                packet_s = float(packet.dts * packet.time_base)
                if first_packet_s is None:
                    first_packet_s = packet_s
                elif _leaped(packet_s, last_packet_s):  # play on from where the last one ended
                    first_packet_s = packet_s - end_s
                last_packet_s = packet_s
                wait = (packet_s - first_packet_s) - (time.monotonic() - wall_start)
                if wait > 0 and self._stop.wait(wait):
                    return False
                duration_s = float(packet.duration * packet.time_base) if packet.duration else frame_s
                end_s = max(end_s, packet_s - first_packet_s + duration_s)
            if backpressure:
                self._slot.wait_until_free(self._stop)
            if packet.is_keyframe:
                now = time.monotonic()
                if last_key_monotonic is not None:
                    interval = now - last_key_monotonic
                    previous = self._key_interval_s
                    self._key_interval_s = (
                        interval if previous is None else previous + SMOOTHING * (interval - previous)
                    )
                last_key_monotonic = now
            if packet.size and self._skip(packet.is_keyframe, skipping):
                skipping = True  # undecoded up to a keyframe: the frames between depend on it
                self._index += 1
                self.stats.dropped += 1
                attempt.frames += 1  # the stream delivered it: a file of skipped frames is not empty
                continue
            skipping = skipping and not packet.is_keyframe
            capture_ts, captured_monotonic = time.time(), time.monotonic()
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                decoded_frames = packet.decode()
            except av.error.FFmpegError as exc:
                self.stats.errors += 1
                self.stats.last_error = f"undecodable packet skipped: {exc}"
                continue
            finally:
                self._count_cpu("decode", started_cpu)
            decode_s = (time.perf_counter() - started) / max(1, len(decoded_frames))
            for decoded in decoded_frames:
                self._index += 1
                self.stats.decoded += 1
                window_frames += 1
                now = time.monotonic()
                self.stats.last_decoded_monotonic = now
                attempt.frames += 1
                attempt.last_frame_monotonic = now
                if attempt.first_frame_monotonic is None:
                    attempt.first_frame_monotonic = now
                    self._set_status(CameraState.STREAMING)
                if now - window_start >= FPS_WINDOW_S:
                    self.stats.decode_fps = window_frames / (now - window_start)
                    window_start, window_frames = now, 0
                video_s = float(decoded.time) if decoded.time is not None else now - wall_start
                if video_s < last_kept_s - TIMESTAMP_EPSILON_S:
                    last_kept_s = -float("inf")  # time went back: a new time base, keep this one
                if video_s - last_kept_s < min_interval - TIMESTAMP_EPSILON_S:
                    self.stats.skipped += 1
                    continue
                last_kept_s = video_s
                frame = self._frame(decoded, capture_ts, captured_monotonic, decode_s)
                if backpressure:  # a packet may carry several frames (the decoder's flush)
                    self._slot.wait_until_free(self._stop)
                self._slot.put(frame)
                self.stats.last_handed_monotonic = time.monotonic()
        # In real time the last frame lasts its duration too: a short looping file keeps its rate.
        wait = end_s - (time.monotonic() - wall_start)
        return not (realtime and wait > 0 and self._stop.wait(wait))

    def _skip(self, keyframe: bool, skipping: bool) -> bool:
        """Whether to leave a packet undecoded (see KEYFRAMES_PER_TAKE).

        Far behind (the slot is full and keyframes come far more often than the pipeline takes
        frames), frames up to the next keyframe are skipped, and a keyframe is skipped too while
        the waiting frame is younger than half a take interval: about one or two frames decoded
        per frame taken, and the frame taken stays recent. Once skipping, only a keyframe ends it.
        """
        assert self._slot is not None
        take_interval_s = self._slot.take_interval_s
        waited_s = self._slot.waited_s()
        behind = (
            waited_s is not None
            and self._key_interval_s is not None
            and take_interval_s is not None
            and self._key_interval_s * KEYFRAMES_PER_TAKE < take_interval_s
        )
        if not keyframe:
            return skipping or behind
        return behind and waited_s is not None and take_interval_s is not None and (
            waited_s < take_interval_s / 2
        )

    def _frame(self, decoded: Any, capture_ts: float, captured_monotonic: float, decode_s: float) -> Frame:
        """The pipeline's frame for a decoded picture, with the detector's input prepared here.

        The full-size BGR image is converted here only when a stage will want it
        (`convert_in_thread`); otherwise it is made on first use (the dashboard's occasional
        snapshot), and the detector's input is made from the YUV planes directly.
        """
        started, started_cpu = time.perf_counter(), time.thread_time()
        frame = Frame(
            self.name,
            self._index,
            capture_ts,
            captured_monotonic,
            convert=partial(decoded.to_ndarray, format="bgr24"),
            size=(decoded.width, decoded.height),
            yuv420=yuv420_planes(decoded),
        )
        if self._convert_in_thread:
            frame.image  # noqa: B018 - converted here, off the event loop
        frame.timings.add("decode", decode_s + time.perf_counter() - started)
        self._count_cpu("decode", started_cpu)
        if self._prepare is not None:
            started_cpu = time.thread_time()
            self._prepare(frame)
            self._count_cpu("preprocess", started_cpu)
        return frame

    def _count_cpu(self, stage: str, started_cpu: float) -> None:
        """CPU seconds of this thread spent on `stage` (decode, preprocess), for the bench."""
        spent = self.stats.cpu_s
        spent[stage] = spent.get(stage, 0.0) + time.thread_time() - started_cpu


def yuv420_planes(decoded: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Views (no copy) of a yuv420p picture's Y, U, V planes; None for other pixel formats.

    Full-range (`yuvj420p`) and other layouts go through FFmpeg's conversion instead.
    """
    if decoded.format.name != "yuv420p":
        return None
    y_plane, u_plane, v_plane = (
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in decoded.planes
    )
    return y_plane, u_plane, v_plane
