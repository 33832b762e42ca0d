"""The built wheel, installed into a fresh virtual environment outside the checkout, runs the demo
from another folder: package data (model configs, the Python-backend runner, dashboard, schemas)
ships with it, and nothing reaches back into the source tree.

Offline and quick: the wheel is built with the build backend of this environment (no
isolation), installed without dependencies, and the dependencies are this environment's, put on
the fresh environment's path by a `.pth` file (its own site-packages, holding the wheel, comes
first; this environment's `.pth` files, the editable install's among them, are not run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamer.core.assets import ASSETS_ENV_VAR
from streamer.inference.repository import CONFIG_FILE, MODEL_FILE, shipped_models
from tests.support.checkout import REPO_ROOT, SAMPLE_CLIP, shipped_config_file

pytestmark = pytest.mark.slow

BUILD_SOURCES = ("pyproject.toml", "README.md", "streamer", "trackers")
COMMAND_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240
FRAMES_PER_CAMERA = 3
DEMO_CAMERAS = {"entrance", "lobby", "corridor", "parking"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def streamer(self) -> Path:
        return self.venv / "bin" / "streamer"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a clean copy: the build never writes into the checkout
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", root / "dist", source)
    (wheel,) = (root / "dist").glob("streamer-*.whl")

    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "--no-deps", "--no-index", wheel)
    purelib = _run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel=wheel, venv=venv)


@pytest.fixture
def operator_env(assets: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of an operator's shell: the assets folder named, nothing of the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env[ASSETS_ENV_VAR] = str(assets)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def test_the_wheel_ships_the_package_data_and_nothing_of_the_checkout(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for model in shipped_models():
        config = f"streamer/inference/model_configs/{model}/{CONFIG_FILE}"
        assert config in names, f"{config} is not in the wheel"
    for data in (
        "streamer/inference/triton_python/model.py",
        "streamer/metrics/static/index.html",
        "streamer/metrics/state.schema.json",
        "streamer/publishing/schemas/frame.json",
    ):
        assert data in names, f"{data} is not in the wheel"
    leaked = sorted(n for n in names if n.split("/")[0] in {"tests", "studies", "configs", "docs"})
    assert not leaked, f"the wheel carries files that are not the product: {leaked[:5]}"
    assert not [n for n in names if n.endswith(".onnx")], "weights are never shipped"


def _collect(stream: Iterator[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _frames_per_camera(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in list(lines):
        message = json.loads(line)
        if message.get("type") == "frame" and message.get("detected") and message.get("tracks"):
            counts[message["camera"]] = counts.get(message["camera"], 0) + 1
    return counts


def test_the_installed_wheel_checks_and_runs_the_demo_outside_the_checkout(
    installed: Installed, operator_env: dict[str, str], tmp_path: Path
) -> None:
    """The demo folder as an operator copied it (config and clip), run from a third folder: the
    model repository appears beside the config, from the shipped configs and the assets' weights."""
    site = tmp_path / "site"
    (site / "configs").mkdir(parents=True)
    (site / "sample_videos").mkdir()
    shutil.copy(SAMPLE_CLIP, site / "sample_videos" / SAMPLE_CLIP.name)
    config = site / "configs" / "demo.yaml"
    # The demo as shipped, but its dashboard on a free port: 8080 may be taken on a shared machine.
    config.write_text((REPO_ROOT / "configs" / "demo.yaml").read_text() + "dashboard:\n  port: 0\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = _run(installed.python, "-c", "import streamer; print(streamer.__file__)", cwd=elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), "the checkout was imported"

    checked = subprocess.run(
        [installed.streamer, "check", str(config)], cwd=elsewhere, env=operator_env,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "will be prepared from the demo weights at start" in checked.stdout

    log_file = tmp_path / "run.log"
    with log_file.open("w") as log:
        service = subprocess.Popen(
            [installed.streamer, "run", str(config)], cwd=elsewhere, env=operator_env,
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
    lines: list[str] = []
    assert service.stdout is not None
    reader = threading.Thread(target=_collect, args=(service.stdout, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and service.poll() is None:
            counts = _frames_per_camera(lines)
            if set(counts) == DEMO_CAMERAS and min(counts.values()) >= FRAMES_PER_CAMERA:
                break
            time.sleep(0.5)
        counts = _frames_per_camera(lines)
        assert service.poll() is None, f"the service exited: {log_file.read_text()[-3000:]}"
        assert set(counts) == DEMO_CAMERAS and min(counts.values()) >= FRAMES_PER_CAMERA, (
            f"people tracked per camera {counts} within {RUN_TIMEOUT_S}s: "
            f"{log_file.read_text()[-3000:]}"
        )
    finally:
        service.send_signal(signal.SIGINT)
        try:
            service.wait(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        reader.join(timeout=5)
    assert service.returncode == 0, log_file.read_text()[-3000:]

    repository = site / "configs" / "model_repository" / "person_detector"
    assert (repository / CONFIG_FILE).read_text() == shipped_config_file("person_detector").read_text()
    assert (repository / "1" / MODEL_FILE).is_file()
    assert not list(elsewhere.iterdir()), "nothing is written to the working directory"
