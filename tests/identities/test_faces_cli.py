"""`streamer faces` from the operator's side: the store the service reads with the same config,
the absolute path printed, and concurrent enrolments both kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.identities.enrolment import FaceStore
from streamer.inference.server import EmbeddedTritonServer
from tests.support.checkout import REPO_ROOT

CLI_TIMEOUT_S = 180
FACE_MODELS = ("face_detector", "face_embedder")


def _streamer(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`streamer ...` run from `cwd`."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "--log-level", "WARNING", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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


def _with_face_models(folder: Path, prepared_repository: Path) -> Path:
    """`folder` holding a `model_repository/` with the face models already prepared (the
    default repository of a config in `folder`, or of no config in it as the working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    for model in FACE_MODELS:
        shutil.copytree(prepared_repository / model, folder / "model_repository" / model)
    return folder


def _enrolled_into(stdout: str, name: str) -> Path:
    prefix = f"enrolled '{name}' from 1 image into "
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return Path(line.removeprefix(prefix))


def test_enrolling_with_and_without_config_lands_where_the_service_reads(
    model_repository: Path, face_photo: Path, tmp_path: Path
) -> None:
    """With `--config`, the store is the config's (beside the file by default), which the service
    reads too; without, it is in the working directory, and the absolute path says so."""
    site = _with_face_models(tmp_path / "site", model_repository)
    elsewhere = _with_face_models(tmp_path / "elsewhere", model_repository)
    config = site / "faces-reid.yaml"
    shutil.copy(REPO_ROOT / "configs" / "faces-reid.yaml", config)

    enroll = ("faces", "enroll")
    without_config, _ = _finish(_streamer(*enroll, "Alice", str(face_photo), cwd=elsewhere))
    with_config, _ = _finish(
        _streamer(*enroll, "Bob", str(face_photo), "--config", str(config), cwd=elsewhere)
    )
    service_reads = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from streamer.config import load_config; "
            "from streamer.identities.stage import resolve_store_path; "
            "print(resolve_store_path(load_config(sys.argv[1])))",
            str(config),
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
        timeout=CLI_TIMEOUT_S,
    ).stdout.strip()

    beside_config = site / "data" / "faces.npz"
    assert _enrolled_into(with_config, "Bob") == beside_config, "the absolute path is printed"
    assert Path(service_reads) == beside_config
    assert FaceStore(beside_config).counts() == {"Bob": 1}
    in_working_directory = elsewhere / "data" / "faces.npz"
    assert _enrolled_into(without_config, "Alice") == in_working_directory
    assert FaceStore(in_working_directory).counts() == {"Alice": 1}
