"""Start and stop a real RTSP camera (tests/support/rtsp_server.py) from the venv's pytest.

The server runs under Debian's /usr/bin/python3 because GStreamer's Python bindings cannot be
installed into the virtual environment; this module only manages the subprocess.

    with RtspServer({"/cam1": clip}) as camera:
        url = camera.url("/cam1")
        ...
        camera.stop()   # the camera goes away (killed, no goodbye)
        camera.start()  # it comes back at the same URL
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
READY_LINE = "READY"
MISSING_BINDINGS_EXIT_CODE = 3
"""Exit status rtsp_server.py uses when gi/GstRtspServer cannot be imported (kept in step)."""
REQUIRED_APT_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools"
)
LOOPBACK_HOST = "127.0.0.1"


class RtspServerError(RuntimeError):
    """The RTSP test server could not be started."""


class RtspServerUnavailable(RtspServerError):
    """The system lacks GStreamer's RTSP server or its Python bindings."""


@dataclass(frozen=True)
class RtspServerSettings:
    """How the RTSP test server process is run."""

    interpreter: Path = Path("/usr/bin/python3")
    """Python with the system's `gi` bindings (python3-gi); a venv's python cannot import gi."""
    ready_timeout_s: float = 20.0
    """How long to wait for READY: GStreamer scans its plugins on the first run on a machine."""
    stop_timeout_s: float = 5.0
    """How long to wait for the process to exit once signalled."""
    loop: bool = True
    """Restart each file when it ends, so tests can read for as long as they like."""


DEFAULT_SETTINGS = RtspServerSettings()


def free_tcp_port(host: str = LOOPBACK_HOST) -> int:
    """A port nothing listens on right now (another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _missing_bindings_message(detail: str) -> str:
    return (
        "the RTSP test server needs GStreamer's RTSP server and its Python bindings for "
        f"/usr/bin/python3: apt-get install -y {REQUIRED_APT_PACKAGES} "
        f"(or run .ci/install-system-deps.sh). {detail}"
    )


class RtspServer:
    """A live-like RTSP camera serving MP4 files, one mount per file, on a fixed local port.

    stop() kills the process, like a camera losing power; start() brings it back on the same
    port, so the same URLs work again.
    """

    def __init__(
        self,
        mounts: Mapping[str, Path],
        *,
        port: int | None = None,
        settings: RtspServerSettings = DEFAULT_SETTINGS,
    ) -> None:
        if not mounts:
            raise ValueError("an RTSP server needs at least one mount")
        self._mounts = {self._normalise_mount(mount): Path(path) for mount, path in mounts.items()}
        for path in self._mounts.values():
            if not path.is_file():
                raise FileNotFoundError(f"RTSP test clip {path} does not exist")
        self._settings = settings
        self._port = port if port is not None else free_tcp_port()
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    @staticmethod
    def _normalise_mount(mount: str) -> str:
        return "/" + mount.strip("/")

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open and sends nothing (a frozen camera)."""
        assert self._process is not None and self.running, "start() first"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self._process is not None, "start() first"
        self._process.send_signal(signal.SIGCONT)

    def url(self, mount: str) -> str:
        normalised = self._normalise_mount(mount)
        if normalised not in self._mounts:
            raise KeyError(f"no mount {normalised!r}; this server has {sorted(self._mounts)}")
        return f"rtsp://{LOOPBACK_HOST}:{self._port}{normalised}"

    def start(self) -> None:
        """Starts the server and returns once it accepts connections."""
        if self.running:
            raise RtspServerError(f"the RTSP server on port {self._port} is already running")
        self._discard_process()
        if not self._settings.interpreter.is_file():
            raise RtspServerUnavailable(
                _missing_bindings_message(f"{self._settings.interpreter} does not exist.")
            )
        command = [
            str(self._settings.interpreter),
            str(SERVER_SCRIPT),
            "--port",
            str(self._port),
        ]
        for mount, path in self._mounts.items():
            command += ["--mount", f"{mount}={path}"]
        if self._settings.loop:
            command.append("--loop")
        # stderr goes to a file: a pipe nobody reads would block the server once full.
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115 - lives as long as the process
            mode="w+", prefix="rtsp-server-", suffix=".log"
        )
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self._wait_until_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        deadline = time.monotonic() + self._settings.ready_timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(timeout=remaining):
                    continue
                line = process.stdout.readline()
                if line.strip() == READY_LINE:
                    return
                if not line:  # stdout closed: the process is exiting
                    self._raise_start_failure(process.wait(self._settings.stop_timeout_s))
        raise RtspServerError(
            f"the RTSP server on port {self._port} was not ready within "
            f"{self._settings.ready_timeout_s} s; its stderr:\n{self._read_stderr()}"
        )

    def _raise_start_failure(self, exit_code: int) -> None:
        stderr = self._read_stderr()
        if exit_code == MISSING_BINDINGS_EXIT_CODE:
            raise RtspServerUnavailable(_missing_bindings_message(stderr.strip()))
        raise RtspServerError(
            f"the RTSP server on port {self._port} exited with status {exit_code} before it was "
            f"ready; its stderr:\n{stderr}"
        )

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self) -> None:
        """Kills the server at once, dropping every client connection (a camera going away)."""
        self._end_process(signal.SIGKILL)

    def terminate(self, stop_signal: signal.Signals = signal.SIGTERM) -> int | None:
        """Asks the server to shut down cleanly and returns its exit status (None if it was
        not running)."""
        return self._end_process(stop_signal)

    def _end_process(self, stop_signal: signal.Signals) -> int | None:
        process = self._process
        exit_status = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a paused server could not handle the stop
                process.send_signal(stop_signal)
                try:
                    process.wait(self._settings.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            exit_status = process.returncode
        self._discard_process()
        return exit_status

    def _discard_process(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class RtspServerFactory:
    """Starts RTSP servers for a test and stops every one of them when the test ends."""

    def __init__(self, settings: RtspServerSettings = DEFAULT_SETTINGS) -> None:
        self._settings = settings
        self._servers: list[RtspServer] = []

    def __call__(
        self,
        mounts: Mapping[str, Path],
        *,
        port: int | None = None,
        settings: RtspServerSettings | None = None,
    ) -> RtspServer:
        server = RtspServer(mounts, port=port, settings=settings or self._settings)
        self._servers.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()

    def __enter__(self) -> RtspServerFactory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()
