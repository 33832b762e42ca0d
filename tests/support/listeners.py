"""Real services on loopback that record what reaches them: a TCP listener (a stand-in for Redis or
any line-based service) and an HTTP server of files (a service reachable only from this host)."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path
from types import TracebackType


class TcpRecorder:
    """Accepts every connection on `host` and keeps every byte received; never answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.1)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._received: list[bytes] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-recorder", daemon=True)
        self._thread.start()

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self._received)

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        connection.settimeout(0.2)
        with connection:
            while not self._done.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self._received.append(data)

    def close(self) -> None:
        self._done.set()
        self._listener.close()
        self._thread.join(2)

    def __enter__(self) -> TcpRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the test's output."""


class FileServer:
    """Serves a folder over HTTP on `host` (e.g. 127.0.0.2: loopback, reachable only from here)."""

    def __init__(self, folder: Path, host: str = "127.0.0.1") -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._server = http.server.ThreadingHTTPServer((host, 0), handler)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="file-server", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
