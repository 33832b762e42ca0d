"""SIGHUP makes `streamer run` re-read its file and apply only the camera differences."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from streamer.inference.server import EmbeddedTritonServer
from tests.support.checkout import REPO_ROOT
from tests.support.rtsp import free_tcp_port

START_LIMIT_S = 90.0
CHANGE_LIMIT_S = 60.0
EXIT_LIMIT_S = 40.0


def config_text(
    triton_url: str, port: int, clip: Path, cameras: list[str], sample_interval_s: float = 0.5
) -> str:
    lines = [
        "# reload test: comments stay",
        f"triton:\n  mode: external\n  url: {triton_url}",
        "publishing:\n  jsonl:\n    enabled: false",
        f"metrics:\n  sample_interval_s: {sample_interval_s}",
        f"dashboard:\n  port: {port}",
        "cameras:",
    ]
    lines += [f"  - name: {name}\n    url: {clip}\n    loop: true\n    max_fps: 2" for name in cameras]
    return "\n".join(lines) + "\n"


def cameras(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/api/cameras", timeout=5) as response:
            return {c["name"]: c for c in json.load(response)["cameras"]}
    except OSError:
        return None


def wait_for(check: Any, what: str, limit_s: float, service: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert service.poll() is None, f"service ended: {service.communicate()[1][-3000:]}"
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {limit_s:.0f} s")


def test_sighup_adds_and_removes_cameras_without_restart(
    tmp_path: Path, sample_clip: Path, embedded_triton: EmbeddedTritonServer
) -> None:
    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}"
    path = tmp_path / "service.yaml"
    path.write_text(config_text(embedded_triton.grpc_url, port, sample_clip, ["lobby", "side"]))
    service = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", str(path)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        def both_processing() -> bool:
            found = cameras(url)
            return bool(found) and set(found) == {"lobby", "side"} and found["lobby"]["processed"] > 0

        wait_for(both_processing, "both cameras processing", START_LIMIT_S, service)
        lobby_before = cameras(url)["lobby"]["processed"]  # type: ignore[index]

        path.write_text(config_text(
            embedded_triton.grpc_url, port, sample_clip, ["lobby", "yard"], sample_interval_s=1.0
        ))
        service.send_signal(signal.SIGHUP)

        def reloaded() -> dict[str, Any] | None:
            found = cameras(url)
            if found and set(found) == {"lobby", "yard"} and found["yard"]["processed"] > 0:
                return found
            return None

        found = wait_for(reloaded, "yard added and side removed by SIGHUP", CHANGE_LIMIT_S, service)
        assert found["lobby"]["processed"] >= lobby_before, "the unchanged camera was restarted"
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=EXIT_LIMIT_S)
        assert service.returncode == 0, err[-3000:]
        assert "config reloaded by SIGHUP: added: yard; removed: side" in err
        assert "changed sections that need a restart to take effect: metrics" in err
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
