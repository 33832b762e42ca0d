#!/usr/bin/python3
"""A real RTSP camera for tests: serves H.264 MP4 files with GStreamer's RTSP server.

Run it with Debian's ``/usr/bin/python3``: the GObject introspection bindings (``gi``) come from
the ``python3-gi`` package and cannot be imported from the project's virtual environment::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 \
        --mount /cam1=/path/a.mp4 --mount /cam2=/path/b.mp4 --loop

Each mount is one shared media paced in real time: every client sees the same stream and
joins it where it currently is, as with a physical camera. ``READY`` is printed on stdout once
the port is bound; SIGTERM or SIGINT stops the server with exit status 0.

Looping uses segment seeks rather than seeking on EOS, because a flushing seek on EOS
deadlocked the server once several clients were attached. The file is started with one
flushing SEGMENT seek; each SEGMENT_DONE is answered with a non-flushing SEGMENT seek back to
the start, so running time and RTP timestamps keep increasing across loops (shifted by one
frame duration per loop, see SegmentLooper). The seeks are made from a helper thread:
SEGMENT_DONE is posted from the demuxer's streaming thread, which a seek issued there would
block. Clients' PLAY requests never seek the shared media (see CameraMedia).

The flushing seek happens while the media is still being prepared, before any data reaches
the RTSP stream: a flush drops the stream's sticky SEGMENT event until the demuxer sends the
next one, and a PLAY answered in that gap aborts the server
(``gst_rtsp_media_get_rates: assertion failed: (FALSE)``, "no segment event on
send_rtp_sink pad"). See SegmentLooper.watch().
"""

from __future__ import annotations

import argparse
import ctypes
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

MISSING_BINDINGS_EXIT_CODE = 3
"""Exit status telling the launcher (tests/support/rtsp.py) that gi/GstRtspServer is missing."""

REQUIRED_APT_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0",
    "python3-gi",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-tools",
)

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as missing_bindings:
    print(
        f"rtsp_server: the GStreamer RTSP server bindings are unavailable ({missing_bindings}). "
        f"Install them with `apt-get install -y {' '.join(REQUIRED_APT_PACKAGES)}` "
        "(or run .ci/install-system-deps.sh) and run this script with /usr/bin/python3.",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(MISSING_BINDINGS_EXIT_CODE)

# GStreamer's boxed types (GstMessage, ...) only exist after Gst.init(); subclassing RTSPMedia
# below re-registers its signals, which fails if they do not exist yet.
Gst.init(None)

READY_LINE = "READY"
LISTEN_ADDRESS = "127.0.0.1"
RTP_PAYLOAD_TYPE = 96
DEMUXER_NAME = "demux"
PARSER_NAME = "parse"
CAMERA_POSITION_NS = 0
"""Stream position reported to the server: the start that PLAY requests ask for."""


@dataclass(frozen=True)
class Mount:
    """One RTSP path and the MP4 file served there."""

    path: str
    """RTSP path beginning with '/', e.g. '/cam1'."""
    media_file: Path
    """H.264 MP4 file; it must demux with qtdemux and parse with h264parse."""

    @classmethod
    def parse(cls, spec: str) -> Mount:
        path, separator, media_file = spec.partition("=")
        if not separator or not path.startswith("/") or not media_file:
            raise argparse.ArgumentTypeError(f"expected /PATH=FILE.mp4, got {spec!r}")
        file_path = Path(media_file)
        if not file_path.is_file():
            raise argparse.ArgumentTypeError(f"media file not found: {file_path}")
        return cls(path=path, media_file=file_path.resolve())

    def launch_description(self) -> str:
        """Pipeline for the media factory.

        h264parse repeats SPS/PPS in front of every keyframe so that a client joining mid-stream
        can decode from the next keyframe. The payloader must not do it as well: it inserts
        them before every IDR slice, and FFmpeg then splits a multi-slice keyframe in two
        frames with the same timestamp.
        """
        location = str(self.media_file).replace("\\", "\\\\").replace('"', '\\"')
        return (
            f'( filesrc location="{location}" ! qtdemux name={DEMUXER_NAME} '
            f"! h264parse name={PARSER_NAME} config-interval=-1 "
            f"! rtph264pay name=pay0 pt={RTP_PAYLOAD_TYPE} config-interval=0 )"
        )


class CameraMedia(GstRtspServer.RTSPMedia):
    """A media that lets clients join the stream where it is instead of rewinding it.

    FFmpeg (and GStreamer's rtspsrc) send ``Range: npt=0.000-`` with PLAY. The server seeks a
    shared media whenever the requested start differs from the reported position, which would
    rewind the stream under every client already watching and cancel the segment looping.
    Reporting position 0 makes that request a no-op, as it is for a real camera.
    """

    def do_query_position(self, *position_address: int) -> bool | tuple[bool, int]:
        # GStreamer 1.22's introspection data lacks the (out) annotation on `position`, so
        # PyGObject hands over the address of the caller's gint64; write it directly. Should a
        # later release fix the annotation, the value is returned instead.
        if not position_address:
            return True, CAMERA_POSITION_NS
        ctypes.c_int64.from_address(position_address[0]).value = CAMERA_POSITION_NS
        return True


@dataclass(frozen=True)
class _Seek:
    """A seek back to the start of the file, made by SegmentLooper's helper thread."""

    demuxer: Gst.Element
    flushing: bool
    release: tuple[Gst.Pad, int] | None = None
    """Blocking probe (pad, probe id) to remove once the seek is made."""


@dataclass
class _FirstOutputHold:
    """One media's demuxer, whose first output waits for the flushing seek (see watch())."""

    demuxer: Gst.Element
    seek_requested: bool = False


class SegmentLooper:
    """Restarts each media's demuxer at the start of its file whenever it finishes a segment.

    Owns the helper thread that performs the seeks; start() and stop() bound its life.
    """

    def __init__(self) -> None:
        self._pending_seeks: queue.SimpleQueue[_Seek | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._seek_forever, name="segment-looper")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._pending_seeks.put(None)
        self._thread.join()

    def watch(self, media: GstRtspServer.RTSPMedia) -> None:
        """Makes media's demuxer loop; called from the factory's media-configure signal.

        The demuxer must be switched to segment mode with a flushing seek, and that flush must
        not reach a prepared media: it removes the sticky SEGMENT event from the RTSP stream
        until the demuxer resends one, and a client's PLAY in between makes
        gst_rtsp_media_get_rates() abort the process. So the demuxer's first output is held
        at the parser's input by a blocking probe; the helper thread makes the flushing seek
        and only then removes the probe. Nothing reaches the RTSP stream before the seek, so
        the media only becomes prepared (and clients only get past DESCRIBE) once the
        demuxer is looping, and every later seek is a non-flushing one.
        """
        media_bin = media.get_element()
        demuxer = media_bin.get_by_name(DEMUXER_NAME)
        parser_input = media_bin.get_by_name(PARSER_NAME).get_static_pad("sink")
        pipeline = media_bin.get_parent()
        pipeline.get_bus().set_sync_handler(self._on_bus_message, demuxer, parser_input)
        hold = _FirstOutputHold(demuxer)
        parser_input.add_probe(Gst.PadProbeType.BLOCK_DOWNSTREAM, self._hold_first_output, hold)

    def _hold_first_output(
        self, pad: Gst.Pad, info: Gst.PadProbeInfo, hold: _FirstOutputHold
    ) -> Gst.PadProbeReturn:
        # Called on the demuxer's streaming thread for the first item it pushes (its pads exist
        # by then, so it can take a seek), and again for items pushed after the seek's flush
        # while the probe is still in place: those just wait for its removal.
        if not hold.seek_requested:
            hold.seek_requested = True
            self._pending_seeks.put(_Seek(hold.demuxer, flushing=True, release=(pad, info.id)))
        return Gst.PadProbeReturn.OK

    def _on_bus_message(
        self, _bus: Gst.Bus, message: Gst.Message, demuxer: Gst.Element, parser_input: Gst.Pad
    ) -> Gst.BusSyncReply:
        # The pipeline posts SEGMENT_DONE once all its elements are done, so the message comes
        # from the pipeline, not the demuxer. It is delivered on the demuxer's streaming thread
        # after the last buffer of the loop went through the parser.
        if message.type == Gst.MessageType.SEGMENT_DONE:
            _format, loop_end = message.parse_segment_done()
            found, last_position = demuxer.query_position(Gst.Format.TIME)
            if found and loop_end > last_position:
                # The next loop's running time starts where the last frame started, not where
                # it ended, so the first frame would repeat the last one's timestamp: shift
                # everything after this point by the missing frame duration.
                shortfall = loop_end - last_position
                parser_input.set_offset(parser_input.get_offset() + shortfall)
            self._pending_seeks.put(_Seek(demuxer, flushing=False))
        return Gst.BusSyncReply.PASS

    def _seek_forever(self) -> None:
        while (request := self._pending_seeks.get()) is not None:
            flags = Gst.SeekFlags.SEGMENT | Gst.SeekFlags.ACCURATE
            if request.flushing:
                flags |= Gst.SeekFlags.FLUSH
            demuxer = request.demuxer
            try:
                restarted = demuxer.seek(
                    1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1
                )
            finally:
                if request.release is not None:
                    # Let the demuxer's output through, looping or not: a media that never
                    # prepares would fail every client instead of only stopping at the end.
                    held_pad, probe_id = request.release
                    held_pad.remove_probe(probe_id)
            if not restarted and demuxer.current_state >= Gst.State.PAUSED:
                print(f"rtsp_server: {demuxer.get_name()} refused to loop", file=sys.stderr)


def build_server(port: int, mounts: list[Mount], looper: SegmentLooper | None) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address(LISTEN_ADDRESS)
    server.set_service(str(port))
    mount_points = server.get_mount_points()
    for mount in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(mount.launch_description())
        factory.set_shared(True)
        factory.set_media_gtype(CameraMedia.__gtype__)
        if looper is not None:
            factory.connect("media-configure", lambda _factory, media: looper.watch(media))
        mount_points.add_factory(mount.path, factory)
    return server


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument(
        "--mount",
        type=Mount.parse,
        action="append",
        required=True,
        metavar="/PATH=FILE.mp4",
        help="serve FILE.mp4 at rtsp://127.0.0.1:PORT/PATH (repeatable)",
    )
    parser.add_argument("--loop", action="store_true", help="restart each file when it ends")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    looper = SegmentLooper() if arguments.loop else None
    server = build_server(arguments.port, arguments.mount, looper)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {LISTEN_ADDRESS}:{arguments.port}", file=sys.stderr)
        return 1
    main_loop = GLib.MainLoop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal_number, main_loop.quit)
    if looper is not None:
        looper.start()
    print(READY_LINE, flush=True)
    try:
        main_loop.run()
    finally:
        if looper is not None:
            looper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
