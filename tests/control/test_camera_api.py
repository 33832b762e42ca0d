"""The camera API on a real service (real Triton, a real RTSP camera), as an operator uses it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer.app import Service
from streamer.config import load_config
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import (
    AUTH,
    TOKEN,
    call,
    jsonl_messages,
    service_yaml,
    started,
    until,
)
from tests.publishing.brokers import BrokerProcess, mosquitto
from tests.support.checkout import REPO_ROOT
from tests.support.rtsp import RtspServer, RtspServerFactory

VAULT_PASSWORD = "sup3r-s3cret"

# A camera thread that dies on a value the API accepted is a failure, not a warning.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@dataclass
class Running:
    service: Service
    url: str
    config_path: Path
    jsonl: Path
    rtsp: RtspServer
    mqtt_port: int


@pytest.fixture(scope="module")
def rtsp_camera(sample_clip: Path) -> Iterator[RtspServer]:
    with RtspServerFactory() as factory:
        yield factory({"door": sample_clip})


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = mosquitto(tmp_path_factory.mktemp("mosquitto"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
async def running(
    embedded_triton: EmbeddedTritonServer,
    sample_clip: Path,
    rtsp_camera: RtspServer,
    broker: BrokerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    folder = tmp_path_factory.mktemp("api")
    config_path, jsonl = folder / "service.yaml", folder / "out.jsonl"
    config_path.write_text(service_yaml(embedded_triton.grpc_url, jsonl, broker.port))
    saved = {k: os.environ.get(k) for k in ("LOBBY_URL", "TEST_DASHBOARD_TOKEN", "VAULT_PASSWORD")}
    os.environ.update({
        "LOBBY_URL": str(sample_clip), "TEST_DASHBOARD_TOKEN": TOKEN, "VAULT_PASSWORD": VAULT_PASSWORD,
    })
    service = Service(load_config(config_path), config_path)
    try:
        url = await started(service)
        yield Running(service, url, config_path, jsonl, rtsp_camera, broker.port)
    finally:
        await service.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def camera(running: Running, name: str) -> dict[str, Any]:
    answer = await call(running.url, "GET", f"/api/cameras/{name}")
    assert answer.status == 200, answer.text
    body: dict[str, Any] = answer.body
    return body


async def metric_series(running: Running) -> list[dict[str, str]]:
    answer = await call(running.url, "GET", "/metrics")
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    ]


def frames_of(messages: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "frame" and m.get("camera") == name]


async def test_camera_added_changed_and_removed_while_others_run_on(running: Running) -> None:
    url = running.url

    async def lobby_busy() -> bool:
        return (await camera(running, "lobby"))["processed"] >= 5

    await until(lobby_busy, "the lobby camera processing frames")

    added = await call(url, "POST", "/api/cameras", {"name": "door", "url": running.rtsp.url("door")})
    assert added.status == 201, added.text
    assert added.body["config"]["url"] == running.rtsp.url("door")

    async def door_frames() -> list[dict[str, Any]]:
        return frames_of(jsonl_messages(running.jsonl), "door")

    await until(door_frames, "frames from the camera added over the API")
    dashboard = await call(url, "GET", "/api/state")
    assert "door" in [c["name"] for c in dashboard.body["cameras"]], "the dashboard shows the new camera"

    changed = await call(url, "PATCH", "/api/cameras/door", {"max_fps": 2})
    assert changed.status == 200, changed.text
    assert changed.body["config"]["max_fps"] == 2

    async def capped() -> dict[str, Any] | None:
        door = await camera(running, "door")
        skipped = [
            labels for labels in await metric_series(running)
            if labels.get("camera") == "door"
        ]
        return door if door["state"] == "streaming" and 0 < door["processed_fps"] <= 3.0 and skipped else None

    await until(capped, "the door camera processing at most ~2 frames a second")

    text = running.config_path.read_text()
    assert "# the camera that must never notice" in text
    assert "# streamer under test" in text
    assert "url: ${LOBBY_URL}" in text, "an ${ENV} reference the API did not change is kept"
    assert [c.name for c in load_config(running.config_path).cameras] == ["lobby", "door"]
    assert load_config(running.config_path).cameras[1].max_fps == 2

    removed = await call(url, "DELETE", "/api/cameras/door")
    assert removed.status == 204, removed.text

    async def door_ended() -> bool:
        return any(
            m.get("type") == "end" and m.get("camera") == "door" for m in jsonl_messages(running.jsonl)
        )

    await until(door_ended, "`end` events for the removed camera's tracks", timeout_s=20)
    listed = await call(url, "GET", "/api/cameras")
    assert [c["name"] for c in listed.body["cameras"]] == ["lobby"]
    assert (await call(url, "GET", "/api/cameras/door")).status == 404

    async def series_gone() -> bool:
        return not any(labels.get("camera") == "door" for labels in await metric_series(running))

    await until(series_gone, "the removed camera's Prometheus series dropped", timeout_s=10)
    assert [c.name for c in load_config(running.config_path).cameras] == ["lobby"]
    assert "# the camera that must never notice" in running.config_path.read_text()

    # The lobby never restarted: its frame indices only grew, and its tracks went on.
    lobby = frames_of(jsonl_messages(running.jsonl), "lobby")
    indices = [m["frame_index"] for m in lobby]
    assert indices == sorted(indices) and len(set(indices)) == len(indices), "lobby restarted"
    assert not any(
        m.get("type") == "end" and m.get("camera") == "lobby" for m in jsonl_messages(running.jsonl)
        if "frame_index" not in m
    ), "the lobby's tracks were ended by a stop"


async def test_refused_changes_change_nothing(running: Running) -> None:
    url = running.url
    before_file = running.config_path.read_bytes()
    before = [c["config"] for c in (await call(url, "GET", "/api/cameras")).body["cameras"]]

    ftp = await call(url, "POST", "/api/cameras", {"name": "bad", "url": "ftp://host/x"})
    assert ftp.status == 422
    assert ftp.body["error"].startswith("cameras[1].url: unsupported URL scheme 'ftp'")

    negative = await call(url, "PATCH", "/api/cameras/lobby", {"max_fps": -1})
    assert negative.status == 422
    assert negative.body["error"].startswith("cameras[0].max_fps: Input should be greater than 0")

    unknown_key = await call(url, "PATCH", "/api/cameras/lobby", {"max_fsp": 3})
    assert unknown_key.status == 422
    assert unknown_key.body["error"] == "cameras[0].max_fsp: unknown key (did you mean 'max_fps'?)"

    secret = await call(
        url, "POST", "/api/cameras", {"name": "cred", "url": "rtsp://admin:hunter2@10.0.0.1/s"}
    )
    assert secret.status == 422
    assert "${" in secret.body["error"] and "hunter2" not in secret.text

    assert (await call(url, "POST", "/api/cameras", {"name": "lobby", "url": "x.mp4"})).status == 409
    assert (await call(url, "PATCH", "/api/cameras/nowhere", {"max_fps": 1})).status == 404
    assert (await call(url, "DELETE", "/api/cameras/nowhere")).status == 404
    last = await call(url, "DELETE", "/api/cameras/lobby")
    assert last.status == 422 and "enabled: false" in last.body["error"]
    form = await call(url, "POST", "/api/cameras", data={"name": "form", "url": "x.mp4"})
    assert form.status == 415
    anonymous = await call(url, "POST", "/api/cameras", {"name": "anon", "url": "x.mp4"}, headers={})
    assert anonymous.status == 401

    assert running.config_path.read_bytes() == before_file
    after = [c["config"] for c in (await call(url, "GET", "/api/cameras")).body["cameras"]]
    assert after == before

    running.config_path.write_text(before_file.decode().replace("${LOBBY_URL}", "ftp://host/x"))
    try:
        reload = await call(url, "POST", "/api/reload", {})
        assert reload.status == 422
        assert reload.body["error"].startswith(f"{running.config_path}:")
        assert "cameras[0].url: unsupported URL scheme 'ftp'" in reload.body["error"]
    finally:
        running.config_path.write_bytes(before_file)
    after = [c["config"] for c in (await call(url, "GET", "/api/cameras")).body["cameras"]]
    assert after == before


async def test_credentials_sent_as_env_references_stay_references_and_hidden(running: Running) -> None:
    url = "rtsp://admin:${VAULT_PASSWORD}@127.0.0.1:9/vault"  # nothing listens: it fails, loudly
    added = await call(running.url, "POST", "/api/cameras", {"name": "vault", "url": url})
    assert added.status == 201, added.text

    async def failing() -> bool:
        return (await camera(running, "vault"))["state"] in ("backoff", "failed")

    await until(failing, "the unreachable camera reporting its failure")
    assert "url: rtsp://admin:${VAULT_PASSWORD}@127.0.0.1:9/vault" in running.config_path.read_text()
    for path in ("/api/cameras", "/api/cameras/vault", "/api/state", "/metrics"):
        answer = await call(running.url, "GET", path)
        assert VAULT_PASSWORD not in answer.text, f"{path} shows the password"
    assert (await call(running.url, "DELETE", "/api/cameras/vault")).status == 204


async def test_concurrent_changes_are_applied_one_at_a_time(running: Running) -> None:
    names = ["spare1", "spare2", "spare3", "spare4", "spare2"]  # one name twice: one must lose
    answers = await asyncio.gather(*(
        call(running.url, "POST", "/api/cameras", {"name": n, "url": "spare.mp4", "enabled": False})
        for n in names
    ))
    assert sorted(a.status for a in answers) == [201, 201, 201, 201, 409]
    in_file = [c.name for c in load_config(running.config_path).cameras]
    assert sorted(in_file) == sorted(["lobby", *set(names)]), "every accepted camera, once"
    assert (await camera(running, "spare1"))["state"] == "disabled"
    removed = await asyncio.gather(*(
        call(running.url, "DELETE", f"/api/cameras/{n}") for n in sorted(set(names))
    ))
    assert [a.status for a in removed] == [204] * 4
    assert [c.name for c in load_config(running.config_path).cameras] == ["lobby"]
    assert "# the camera that must never notice" in running.config_path.read_text()


async def test_cli_lists_and_toggles_cameras(running: Running) -> None:
    async def cli(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamer.cli", "cameras", *args, "--url", running.url,
            cwd=REPO_ROOT, env={**os.environ, "STREAMER_DASHBOARD_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    code, out = await cli("list")
    assert code == 0 and "lobby" in out, out
    waiter = asyncio.create_task(running.service.wait())
    code, out = await cli("disable", "lobby")
    assert code == 0, out
    assert (await camera(running, "lobby"))["state"] == "disabled"
    assert "enabled: false" in running.config_path.read_text()
    await asyncio.sleep(0.5)  # wait() re-checks on every change; give it the chance to end
    assert not waiter.done(), "the service stopped because no camera was left running"
    waiter.cancel()
    code, out = await cli("enable", "lobby")
    assert code == 0, out

    async def streaming() -> bool:
        return (await camera(running, "lobby"))["state"] == "streaming"

    await until(streaming, "the lobby streaming again after `cameras enable`")
    code, out = await cli("add", "side", str(REPO_ROOT / "sample_videos" / "vtest_pedestrians.mp4"),
                          "max_fps=2", "loop=true")
    assert code == 0 and "added side" in out, out
    assert (await camera(running, "side"))["config"]["max_fps"] == 2
    code, out = await cli("remove", "side")
    assert code == 0, out
    code, out = await cli("remove", "nowhere")
    assert code != 0 and "no camera named 'nowhere'" in out, out


async def test_mqtt_switches_a_camera_off_and_on(running: Running) -> None:
    """Frigate's `{camera}/enabled/set` round trip against a real Mosquitto."""
    states: list[str] = []
    async with aiomqtt.Client("127.0.0.1", running.mqtt_port, timeout=10) as client:
        await client.subscribe("apitest/lobby/enabled", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                states.append(message.payload.decode())

        collector = asyncio.create_task(collect())
        try:
            async def state_is(value: str) -> bool:
                return bool(states) and states[-1] == value

            await until(lambda: state_is("ON"), "the retained ON state of the lobby")
            await client.publish("apitest/lobby/enabled/set", "OFF", qos=1)
            await until(lambda: state_is("OFF"), "the lobby's state OFF after enabled/set OFF")
            assert (await camera(running, "lobby"))["state"] == "disabled"
            assert "enabled: false" in running.config_path.read_text()
            await client.publish("apitest/lobby/enabled/set", "ON", qos=1)
            await until(lambda: state_is("ON"), "the lobby's state ON after enabled/set ON")

            async def streaming() -> bool:
                return (await camera(running, "lobby"))["state"] == "streaming"

            await until(streaming, "the lobby streaming again after enabled/set ON")
            await client.publish("apitest/nowhere/enabled/set", "ON", qos=1)  # refused, logged
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


async def test_openapi_document_drives_the_api_without_server_errors(running: Running) -> None:
    """Fuzz every operation from /api/openapi.json: no 5xx, and a refusal changes nothing.

    The requests are made from a thread: the service answers on this test's event loop."""
    failures = await asyncio.to_thread(fuzz, running)
    assert not failures, "\n".join(failures)


def fuzz(running: Running) -> list[str]:
    import hypothesis
    import requests
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{running.url}/api/openapi.json", headers=AUTH)
    failures: list[str] = []
    statuses: list[tuple[str, str, int]] = []

    def snapshot() -> tuple[bytes, Any]:
        cameras = requests.get(f"{running.url}/api/cameras", headers=AUTH, timeout=10).json()
        return running.config_path.read_bytes(), [c["config"] for c in cameras["cameras"]]

    def exercise_operation(operation: Any) -> None:
        @hypothesis.settings(
            max_examples=12, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            before = snapshot()
            response = case.call(base_url=running.url, headers=AUTH, timeout=30)
            where = f"{operation.method.upper()} {case.formatted_path}"
            statuses.append((operation.method.upper(), operation.path, response.status_code))
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and snapshot() != before:
                failures.append(f"{where}: refused with {response.status_code} but changed state")

        exercise()

    for result in schema.get_all_operations():
        exercise_operation(result.ok())
    if ("POST", "/api/cameras", 201) not in Counter(statuses):
        failures.append(f"no generated camera was ever accepted: {Counter(statuses)}")
    return failures
