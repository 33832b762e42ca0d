"""`streamer faces` from the operator's side: one store rule for every command and the service,
the absolute path printed, and concurrent enrolments both kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.core.assets import PROJECT_ROOT
from streamer.identities.enrolment import FaceStore
from streamer.inference.server import EmbeddedTritonServer

CLI_TIMEOUT_S = 180
FACE_MODELS = ("face_detector", "face_embedder")


def _streamer(*args: str, cwd: Path, project: Path = PROJECT_ROOT) -> subprocess.Popen[str]:
    """`streamer ...` run from `cwd` with the package found in `project`."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "--log-level", "WARNING", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(project)},
    )


def _finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_S)
    assert process.returncode == 0, stderr
    return stdout, stderr


@pytest.fixture(scope="module")
def face_photo(assets: Path) -> Path:
    return assets / "images" / "astronaut.png"


def test_two_enrolments_at_once_both_stay_enrolled(
    embedded_triton: EmbeddedTritonServer, face_photo: Path, tmp_path: Path
) -> None:
    store = tmp_path / "faces.npz"
    config = tmp_path / "config.yaml"
    config.write_text(
        f'triton: {{mode: external, url: "{embedded_triton.grpc_url}"}}\n'
        f'identities: {{faces_store: "{store}"}}\n'
        "cameras: [{name: door, url: door.mp4}]\n"
    )
    enrolments = [
        _streamer("faces", "enroll", name, str(face_photo), "--config", str(config), cwd=tmp_path)
        for name in ("Alice", "Bob")
    ]
    for process in enrolments:
        _finish(process)

    assert FaceStore(store).counts() == {"Alice": 1, "Bob": 1}


def _sandbox_project(root: Path, prepared_repository: Path) -> Path:
    """A copy of the project (package, shipped configs, the face models already prepared), so
    the default store `data/faces.npz` in the project lands in the test's folder."""
    project = root / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("streamer", "trackers", "configs"):
        shutil.copytree(PROJECT_ROOT / package, project / package, ignore=ignore)
    for model in FACE_MODELS:
        shutil.copytree(prepared_repository / model, project / "model_repository" / model)
    return project


def _enrolled_into(stdout: str, name: str) -> Path:
    prefix = f"enrolled '{name}' from 1 image into "
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return Path(line.removeprefix(prefix))


def test_enrolling_with_and_without_config_lands_where_the_service_reads(
    model_repository: Path, face_photo: Path, tmp_path: Path
) -> None:
    project = _sandbox_project(tmp_path, model_repository)
    elsewhere = tmp_path / "elsewhere"  # the operator's working directory plays no part
    elsewhere.mkdir()
    shipped = project / "configs" / "faces-reid.yaml"

    enroll = ("faces", "enroll")
    without_config, _ = _finish(
        _streamer(*enroll, "Alice", str(face_photo), cwd=elsewhere, project=project)
    )
    with_config, _ = _finish(
        _streamer(*enroll, "Bob", str(face_photo), "--config", str(shipped), cwd=elsewhere, project=project)
    )
    service_reads = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from streamer.config import load_config; "
            "from streamer.identities.stage import resolve_store_path; "
            "print(resolve_store_path(load_config(sys.argv[1])))",
            str(shipped),
        ],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        check=True,
        timeout=CLI_TIMEOUT_S,
    ).stdout.strip()

    expected = project / "data" / "faces.npz"
    assert _enrolled_into(without_config, "Alice") == expected, "the absolute path is printed"
    assert _enrolled_into(with_config, "Bob") == expected
    assert Path(service_reads) == expected
    assert FaceStore(expected).counts() == {"Alice": 1, "Bob": 1}
