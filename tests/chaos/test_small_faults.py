"""The smaller faults of issue 25 (finding 6), each with real processes and real files: a config
file that is not UTF-8 (`run`, `check`, SIGHUP), `check` on an audio-only file and on an RTSP
server that never answers, runtime folders of embedded servers whose owner was killed, and a
config write-back interrupted by kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config import load_config
from streamer.control.cameras import CameraControl
from streamer.inference.repository import CONFIG_FILE
from streamer.inference.server import EmbeddedTritonServer
from tests.support.checkout import REPO_ROOT as PROJECT_ROOT

EXIT_LIMIT_S = 60.0
WORKDIR_PREFIX = "streamer-triton-"  # the embedded server's runtime folders in the temp folder
NOT_UTF8 = "cameras:\n  - name: caf\xe9\n    url: {clip}\n"  # written as latin-1: byte 0xe9


def streamer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=EXIT_LIMIT_S, env=env,
    )


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_config_file_that_is_not_utf8_is_one_line_naming_where_and_exit_2(
    tmp_path: Path, sample_clip: Path, command: str
) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(NOT_UTF8.format(clip=sample_clip).encode("latin-1"))
    done = streamer(command, str(config))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"error: {config}:2:14: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    )


def test_sighup_with_a_config_file_that_is_not_utf8_is_refused_and_the_service_goes_on(
    tmp_path: Path, sample_clip: Path, embedded_triton: EmbeddedTritonServer
) -> None:
    config = tmp_path / "service.yaml"
    good = (
        f"triton:\n  mode: external\n  url: {embedded_triton.grpc_url}\n"
        "publishing:\n  jsonl:\n    enabled: false\ndashboard:\n  port: 0\n"
        f"cameras:\n  - name: lobby\n    url: {sample_clip}\n    loop: true\n"
    )
    config.write_text(good)
    service = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", str(config)],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert service.stderr is not None
        lines: list[str] = []
        while not any("camera lobby: connecting -> streaming" in line for line in lines):
            line = service.stderr.readline()
            assert line, f"service ended early: {''.join(lines)}"
            lines.append(line)
        config.write_bytes(good.replace("lobby", "caf\xe9").encode("latin-1"))
        service.send_signal(signal.SIGHUP)
        while not any("reload refused" in line for line in lines):
            line = service.stderr.readline()
            assert line, f"service ended: {''.join(lines)}"
            lines.append(line)
        assert service.poll() is None, "the service goes on"
        service.send_signal(signal.SIGTERM)
        _out, rest = service.communicate(timeout=EXIT_LIMIT_S)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    err = "".join(lines) + rest
    assert service.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    refused = [line for line in err.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "not UTF-8 text (byte 0xe9)" in refused[0], refused


def audio_only_file(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp2", rate=44100)
        samples = (np.sin(np.arange(44100) / 10.0) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def silent_rtsp_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (a hung camera)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()
    for connection in held:
        connection.close()


def test_check_says_no_video_for_audio_and_timeout_for_a_silent_rtsp_server(
    tmp_path: Path, embedded_triton: EmbeddedTritonServer, silent_rtsp_server: int
) -> None:
    audio = audio_only_file(tmp_path / "radio.mp4")
    config = tmp_path / "check.yaml"
    config.write_text(
        f"triton:\n  mode: external\n  url: {embedded_triton.grpc_url}\n"
        "cameras:\n"
        f"  - name: radio\n    url: {audio}\n"
        f"  - name: hung\n    url: rtsp://127.0.0.1:{silent_rtsp_server}/cam\n    open_timeout_s: 1\n"
    )
    done = streamer("check", str(config))
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("  camera ")}
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in lines["radio"] and lines["radio"].endswith("NoVideo: no video stream"), lines
    assert "IndexError" not in done.stdout
    assert "FAIL" in lines["hung"] and "no answer from the server within open_timeout_s=1" in lines["hung"]
    assert "TimeoutError" in lines["hung"] and "Invalid data" not in lines["hung"], lines["hung"]


CLAIMANT = """
import os, sys, time
from streamer.inference.server import claim_workdir
workdir, _lock = claim_workdir()
print(workdir.name, flush=True)
time.sleep(600)
"""

SERVICE = """
import asyncio, sys, time
from pathlib import Path
from streamer.inference.server import EmbeddedTritonServer

async def main():
    server = EmbeddedTritonServer(Path(sys.argv[1]), [sys.argv[2]], ort_threads=1)
    await server.start()
    print(server.pid, server.log_path.parent, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""
SERVER_END_LIMIT_S = 30.0


def in_tmp(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def claimant(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that owns an embedded server's runtime folder in `tmp`, as a service does."""
    process = subprocess.Popen([sys.executable, "-c", CLAIMANT], cwd=PROJECT_ROOT, text=True,
                               stdout=subprocess.PIPE, env=in_tmp(tmp))
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def is_running(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


async def test_a_killed_services_server_ends_and_its_folder_is_swept_at_the_next_start(
    tmp_path: Path, model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = sorted(p.name for p in model_repository.iterdir() if (p / CONFIG_FILE).is_file())[0]
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(model_repository), model],
                               cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE, env=in_tmp(tmp_path))
    alive, held = claimant(tmp_path)
    try:
        assert service.stdout is not None
        pid_text, folder = service.stdout.readline().split()
        server_pid, leftover = int(pid_text), Path(folder)
        service.send_signal(signal.SIGKILL)  # what the OOM killer does: no cleanup runs
        service.wait()
        deadline = time.monotonic() + SERVER_END_LIMIT_S
        while is_running(server_pid):
            assert time.monotonic() < deadline, "the server outlived its service"
            time.sleep(0.1)
        assert leftover.is_dir() and held.is_dir()
        older = tmp_path / f"{WORKDIR_PREFIX}from-an-older-version"  # no owner lock: left alone
        older.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        server = EmbeddedTritonServer(model_repository, [model], ort_threads=1)
        await server.start()
        try:
            own = [p for p in tmp_path.glob(f"{WORKDIR_PREFIX}*") if p not in (held, older)]
            assert not leftover.exists(), "the dead service's folder is swept"
            assert held.is_dir() and older.is_dir(), "a live owner's folder is kept"
            assert len(own) == 1
        finally:
            await server.stop()
        assert not own[0].exists()
    finally:
        for process in (service, alive):
            process.kill()
            process.wait()


INTERRUPTED_WRITER = """
import os, signal, sys
from pathlib import Path
from streamer.control import document
# Killed right after the temporary file was created, before a byte of it is written.
os.fdopen = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
document.write_atomically(Path(sys.argv[1]), "cameras: []")  # a camera change, written back
"""


def test_a_config_write_back_killed_half_way_leaves_nothing_behind_at_the_next_start(
    tmp_path: Path, sample_clip: Path
) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(f"cameras:\n  - name: lobby\n    url: {sample_clip}\n")
    killed = subprocess.run([sys.executable, "-c", INTERRUPTED_WRITER, str(config)], cwd=PROJECT_ROOT)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".cfg.yaml.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 0
    an_hour_ago = time.time() - 3600
    os.utime(leftovers[0], (an_hour_ago, an_hour_ago))  # the service starts again later
    in_progress = tmp_path / ".cfg.yaml.another-writer.tmp"  # someone writing right now: kept
    in_progress.write_text("cameras: []\n")
    CameraControl(load_config(config), config)  # what the service does at start
    assert not leftovers[0].exists()
    assert in_progress.exists() and config.read_text().startswith("cameras:")
