"""The `streamer` command as an operator uses it: check, models, errors as one clear line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamer.cli.common import StartupInterrupted, run_until_signal
from streamer.core.redaction import redact_url
from tests.support.checkout import REPO_ROOT
from tests.support.credentials import FORMS, MALFORMED, CredentialForm, leaks

CLOSED_PORT_URL = "http://127.0.0.1:9"


def streamer(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )


def test_check_reports_each_camera_and_fails_when_one_is_dead(tmp_path: Path, sample_clip: Path) -> None:
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        f"  - name: street\n    url: {sample_clip}\n"
        "  - name: gate\n    url: rtsp://admin:hunter2@127.0.0.1:9/stream\n    open_timeout_s: 2\n"
        "  - name: spare\n    url: rtsp://127.0.0.1:9/x\n    enabled: false\n"
    )
    result = streamer("check", str(config))
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("  camera")}
    assert result.returncode == 1, result.stdout + result.stderr
    assert " ok " in lines["street"] and "768x576 h264" in lines["street"]
    assert lines["street"].endswith("motion gating off"), "files are not gated by default"
    assert " FAIL " in lines["gate"] and "ConnectionRefused" in lines["gate"]
    assert " skip " in lines["spare"]
    assert "hunter2" not in result.stdout + result.stderr
    assert "some checks FAILED" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras:\n  - name: a\n    url: gopher://x\n", "cameras[0].url: unsupported URL scheme 'gopher'"),
        ("camera:\n  - name: a\n", "camera: unknown key (did you mean 'cameras'?)"),
    ],
)
def test_bad_config_is_one_line_on_stderr_and_exit_code_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = streamer("run", str(config))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any(message in line and line.startswith(f"error: {config}:") for line in errors), result.stderr
    assert "Traceback" not in result.stderr


def test_models_lists_expectations_presence_and_production_sources(assets: Path) -> None:
    result = streamer("models", "list")
    assert result.returncode == 0, result.stderr
    assert "person_detector: person detector (YOLOX family)" in result.stdout
    assert f"demo       {assets / 'models' / 'yolox_nano.onnx'} sha256=" in result.stdout
    assert "production ByteTrack" in result.stdout


def test_fetch_without_network_fails_with_a_clear_error_and_what_to_do(tmp_path: Path) -> None:
    env = {"STREAMER_ASSETS": str(tmp_path / "no-assets"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = streamer("models", "fetch", "person_detector", "--mirror", CLOSED_PORT_URL, env=env)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert errors[0] == (
        f"error: person_detector: cannot download {CLOSED_PORT_URL}/yolox_nano.onnx: "
        "[Errno 111] Connection refused"
    )
    assert errors[1].startswith("  download yolox_nano.onnx from ")


def test_research_only_weights_are_never_fetched(tmp_path: Path) -> None:
    env = {"STREAMER_ASSETS": str(tmp_path / "no-assets"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = streamer("models", "fetch", "person_reid", env=env)
    assert result.returncode == 1
    assert "research only" in result.stderr and "production:" in result.stderr


def test_run_without_weights_says_what_is_missing_and_how_to_get_it(
    tmp_path: Path, sample_clip: Path
) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"triton:\n  model_repository: {tmp_path / 'repo'}\ndashboard:\n  port: 0\n"
        f"cameras:\n  - name: a\n    url: {sample_clip}\n"
    )
    env = {"STREAMER_ASSETS": str(tmp_path / "no-assets"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = streamer("run", str(config), env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model.onnx: missing" in last and "streamer models fetch" in last


def test_check_reports_an_unreachable_external_triton_in_one_line(tmp_path: Path, sample_clip: Path) -> None:
    config = tmp_path / "external.yaml"
    config.write_text(
        "triton:\n  mode: external\n  url: 127.0.0.1:9\n"
        f"cameras:\n  - name: street\n    url: {sample_clip}\n"
    )
    result = streamer("check", str(config))
    triton_lines = [line for line in result.stdout.splitlines() if line.startswith("  triton")]
    assert result.returncode == 1
    assert len(triton_lines) == 1 and " FAIL " in triton_lines[0] and "127.0.0.1:9" in triton_lines[0]


def test_check_covers_the_face_and_reid_models_a_config_enables(
    tmp_path: Path, sample_clip: Path
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()  # empty: every model the config needs must be reported missing
    config = tmp_path / "faces.yaml"
    config.write_text(
        f"triton:\n  mode: embedded\n  model_repository: {repository}\n"
        "faces:\n  enabled: true\nreid:\n  enabled: true\n"
        f"cameras:\n  - name: street\n    url: {sample_clip}\n"
    )
    result = streamer("check", str(config))
    checked = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("  model ")}
    assert result.returncode == 1, result.stdout + result.stderr
    assert checked == {"person_detector", "face_detector", "face_embedder", "person_reid"}


def test_check_fails_a_detector_whose_config_dims_contradict_the_prepared_file(
    tmp_path: Path, sample_clip: Path
) -> None:
    repository = tmp_path / "repository"  # `models prepare` writes the shipped config there
    prepared = streamer(
        "models", "prepare", "person_detector", "--classes", "3", "--repository", str(repository)
    )
    assert prepared.returncode == 0, prepared.stderr
    config = tmp_path / "cars.yaml"
    config.write_text(
        f"triton:\n  mode: embedded\n  model_repository: {repository}\n"
        f"cameras:\n  - name: street\n    url: {sample_clip}\n"
    )
    result = streamer("check", str(config))
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("  model ")]
    assert result.returncode == 1, result.stdout + result.stderr
    assert " FAIL " in line and "dims [3549, 6] differ from [3549, 8]" in line


class SlowStart:
    """start/wait/stop of a service whose start takes long (Triton loading), recording each call.

    stop() sends the same signal once more, as an impatient operator would, while it runs.
    """

    START_S = 30.0

    def __init__(self, sig: signal.Signals) -> None:
        self.signal = sig
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")
        try:
            await asyncio.sleep(self.START_S)
        except asyncio.CancelledError:
            self.calls.append("start cancelled")
            raise

    async def wait(self) -> None:
        self.calls.append("wait")

    async def stop(self) -> None:
        self.calls.append("stop")
        os.kill(os.getpid(), self.signal)  # the handler is still installed: logged, nothing else
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_during_startup_cancels_start_and_stops_once(
    stop_signal: signal.Signals, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    service = SlowStart(stop_signal)
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, os.kill, os.getpid(), stop_signal)

    async def run() -> StartupInterrupted | None:
        """Caught in the same task: a SystemExit leaving a task would end the test's event loop."""
        try:
            await run_until_signal(service.start, service.wait, service.stop)
        except StartupInterrupted as exc:
            return exc
        return None

    started = time.monotonic()
    with caplog.at_level("INFO", "streamer"):
        interrupted = await asyncio.wait_for(run(), 10)
    elapsed_s = time.monotonic() - started

    assert elapsed_s < 3, "start must not run to its end"
    assert interrupted is not None and interrupted.code == 128 + stop_signal
    assert service.calls == ["start", "start cancelled", "stop"]
    assert f"{stop_signal.name}: already stopping" in caplog.text
    assert capsys.readouterr().err.splitlines() == [
        f"interrupted: {stop_signal.name} during startup; stopped before the service ran"
    ]


def test_check_hides_every_credential_form(tmp_path: Path) -> None:
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        + "".join(
            f"  - name: {form.camera}\n    url: '{form.url}'\n    open_timeout_s: 2\n" for form in FORMS
        )
    )
    result = streamer("check", str(config))
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("  camera")}
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(lines) == sorted(form.camera for form in FORMS)
    for form in FORMS:
        assert f" FAIL {redact_url(form.url)}: " in lines[form.camera], lines[form.camera]
    assert leaks(result.stdout + result.stderr, FORMS) == [], result.stdout + result.stderr


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("form", [pytest.param(form, id=form.id) for form in MALFORMED[:2]])
def test_a_malformed_camera_url_is_one_line_without_the_secret(
    tmp_path: Path, command: str, form: CredentialForm
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"cameras:\n  - name: gate\n    url: '{form.url}'\n")
    result = streamer(command, str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {config}:3: cameras[0].url: malformed URL: "), errors[0]
    assert "Traceback" not in result.stderr
    assert leaks(result.stdout + result.stderr, [form]) == []


def test_every_command_runs_opencv_in_the_calling_thread_only() -> None:
    """OpenCV's thread pool would wake its threads around every small picture (letterbox,
    motion) of every camera's thread: the commands turn it off before doing anything."""
    script = (
        "import cv2\n"
        "from streamer.cli import main\n"
        "before = cv2.getNumThreads()\n"
        "main(['models', 'list'])\n"
        "print('threads', before, cv2.getNumThreads())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split("threads")[-1].split()
    assert int(after) == 1
    assert (os.cpu_count() or 1) == 1 or int(before) > 1, "the default must differ to be tested"
