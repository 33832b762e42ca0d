"""The real service the camera API tests share (real Triton, a real RTSP camera, a real broker)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamer.app import Service
from streamer.config import load_config
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import TOKEN, service_yaml, started
from tests.metrics.conftest import page  # noqa: F401 - the browser tab fixture, shared
from tests.publishing.brokers import BrokerProcess, mosquitto
from tests.support.rtsp import RtspServer, RtspServerFactory

VAULT_PASSWORD = "sup3r-s3cret"


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


