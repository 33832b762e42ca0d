"""`streamer run` as an operator runs it: output flows, and a signal stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.checkout import REPO_ROOT

FIRST_OUTPUT_LIMIT_S = 90.0
EXIT_LIMIT_S = 40.0


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_service_and_its_triton_without_leftovers(
    tmp_path: Path, sample_clip: Path, model_repository: Path, stop_signal: signal.Signals
) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(
        f"triton:\n  model_repository: {model_repository}\n  ort_threads: 1\n"
        "dashboard:\n  port: 0\n"
        f"cameras:\n  - name: lobby\n    url: {sample_clip}\n    loop: true\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", str(config)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert service.stdout is not None
        deadline = time.monotonic() + FIRST_OUTPUT_LIMIT_S
        frames = 0
        while frames < 3:
            assert time.monotonic() < deadline, "no output from the service"
            line = service.stdout.readline()
            assert line, f"service ended early: {service.stderr.read() if service.stderr else ''}"
            message = json.loads(line)
            frames += message["type"] == "frame"
        servers = {p for p in children_of(service.pid) if "tritonserver" in command_of(p)}
        assert servers, "the embedded tritonserver runs as a child of the service"
        service.send_signal(stop_signal)
        _out, err = service.communicate(timeout=EXIT_LIMIT_S)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    assert "pipeline stopped" in err
    assert not [pid for pid in servers if is_running(pid)]
    # this service's regions (its own and its server's) are named after its pid
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"streamer_{service.pid}_")], err


STARTUP_SIGNAL_EXIT_LIMIT_S = 8.0
STARTED_LINE = "dashboard at "  # logged just before the pipeline starts waiting for Triton


@pytest.mark.parametrize(
    ("stop_signal", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_while_waiting_for_an_unreachable_triton_exits_at_once(
    tmp_path: Path, sample_clip: Path, stop_signal: signal.Signals, exit_code: int
) -> None:
    config = tmp_path / "unreachable.yaml"
    config.write_text(
        "triton:\n  mode: external\n  url: 127.0.0.1:9\n  startup_timeout_s: 60\n"
        "dashboard:\n  port: 0\n"
        f"cameras:\n  - name: lobby\n    url: {sample_clip}\n    loop: true\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", str(config)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert service.stderr is not None
        early: list[str] = []
        while not early or STARTED_LINE not in early[-1]:
            line = service.stderr.readline()
            assert line, f"service ended early: {''.join(early)}"
            early.append(line)
        time.sleep(1.0)  # well inside the 60 s it would wait for Triton
        signalled = time.monotonic()
        service.send_signal(stop_signal)
        _out, rest = service.communicate(timeout=30)
        exit_s = time.monotonic() - signalled
    finally:
        if service.poll() is None:
            service.kill()
    err = "".join(early) + rest
    assert exit_s < STARTUP_SIGNAL_EXIT_LIMIT_S, err
    assert service.returncode == exit_code, err
    assert err.splitlines()[-1] == (
        f"interrupted: {stop_signal.name} during startup; stopped before the service ran"
    )
    assert err.count("pipeline stopped") == 1 and "Traceback" not in err
