"""Exit codes of `streamer check` as the README documents them, and `models fetch` offline.

    0  the configuration is valid and every probe passed
    1  a probe failed (here: the broker's ACL denies the MQTT probe)
    2  the configuration is invalid, or the command line is wrong
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.core.assets import ASSETS_ENV_VAR
from streamer.inference.catalog import entry
from tests.publishing.brokers import BrokerProcess, mosquitto
from tests.support.checkout import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

CLOSED_PORT_URL = "http://127.0.0.1:9"
USER, SECRET = "streamer", "exit-Codes-7"
ACL = f"user {USER}\ntopic readwrite allowed/#\n"


def streamer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True, text=True, timeout=90, cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )


def documented_check_exit_codes() -> dict[int, str]:
    """The rows of the README's `streamer check` exit-code table."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.find("`streamer check` exit codes:")
    assert start >= 0, "README.md: no '`streamer check` exit codes:' table"
    table = readme[start:].split("\n\n")[1]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.M)}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = mosquitto(tmp_path / "mosquitto", users={USER: SECRET}, acl=ACL,
                        unlimited_queues=False)
    process.start()
    yield process
    process.stop()


def write_config(folder: Path, clip: Path, broker: BrokerProcess, prefix: str) -> Path:
    config = folder / f"{prefix}.yaml"
    config.write_text(
        "triton:\n  mode: embedded\n"
        "publishing:\n  jsonl: {enabled: false}\n"
        f"  mqtt:\n    enabled: true\n    port: {broker.port}\n    username: {USER}\n"
        f"    password: ${{MQTT_PASSWORD}}\n    topic_prefix: {prefix}\n"
        f"cameras:\n  - name: street\n    url: {clip}\n"
    )
    return config


def test_readme_documents_the_check_exit_codes() -> None:
    codes = documented_check_exit_codes()
    assert sorted(codes) == [0, 1, 2], codes
    assert "every probe passed" in codes[0]
    assert "probe failed" in codes[1]
    assert "invalid" in codes[2] and "usage" in codes[2]


def test_check_exits_0_when_every_probe_passes(
    tmp_path: Path, sample_clip: Path, assets: Path, broker: BrokerProcess
) -> None:
    config = write_config(tmp_path, sample_clip, broker, "allowed")
    result = streamer("check", str(config), env={"MQTT_PASSWORD": SECRET, ASSETS_ENV_VAR: str(assets)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "published and read back" in result.stdout and SECRET not in result.stdout


def test_check_exits_1_when_the_broker_denies_the_probe(
    tmp_path: Path, sample_clip: Path, assets: Path, broker: BrokerProcess
) -> None:
    config = write_config(tmp_path, sample_clip, broker, "denied")
    result = streamer("check", str(config), env={"MQTT_PASSWORD": SECRET, ASSETS_ENV_VAR: str(assets)})
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("  mqtt")]
    assert " FAIL " in line and "denied/check/" in line and "Not authorized" in line, line
    assert "some checks FAILED" in result.stdout


@pytest.mark.parametrize(
    "text",
    ["camera:\n  - name: a\n", "cameras:\n  - name: a\n    url: gopher://x\n"],
    ids=["unknown-key", "bad-url"],
)
def test_check_exits_2_on_a_config_error(tmp_path: Path, text: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = streamer("check", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {config}:") and "Traceback" not in result.stderr


def test_check_exits_2_on_a_missing_file_or_usage(tmp_path: Path) -> None:
    assert streamer("check", str(tmp_path / "missing.yaml")).returncode == 2
    assert streamer("check").returncode == 2


def test_fetch_offline_says_what_to_download_from_where_and_where_to_put_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"STREAMER_ASSETS": str(tmp_path / "no-assets"), "XDG_CACHE_HOME": str(cache)}
    result = streamer("models", "fetch", "person_detector", "--mirror", CLOSED_PORT_URL, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: person_detector:"), lines
    message = result.stderr
    detector = entry("person_detector")
    assert detector.fetch_url is not None
    assert f"{CLOSED_PORT_URL}/yolox_nano.onnx" in message  # what was tried
    assert f"download yolox_nano.onnx from {detector.fetch_url}" in message  # from where
    assert f"put it at {cache / 'streamer' / 'models' / 'yolox_nano.onnx'}" in message  # where


def test_fetch_of_research_weights_says_where_to_get_them_and_where_they_go(tmp_path: Path) -> None:
    env = {"STREAMER_ASSETS": str(tmp_path / "no-assets"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    result = streamer("models", "fetch", "face_detector", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, lines
    assert "scrfd_500m_kps.onnx" in lines[0] and "research only" in lines[0]
    assert f"put it at {tmp_path / 'no-assets' / 'models' / 'scrfd_500m_kps.onnx'}" in lines[0]
    assert "production: SCRFD-10G" in result.stderr
