"""Fixtures: a real broker per test (free port, own data folder), for MQTT and for Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.publishing.brokers import BrokerProcess
from tests.publishing.harness import Harness, MqttHarness, RedisHarness

BROKERS = ["mqtt", "redis"]
HarnessFactory = Callable[..., Harness]


@pytest.fixture
async def harness_factory(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """make(kind, secret=None): a started broker (requiring that password) and its harness."""
    started: list[Harness] = []

    def make(kind: str, secret: str | None = None) -> Harness:
        folder = tmp_path / f"{kind}-{len(started)}"
        harness: Harness
        if kind == "mqtt":
            harness = MqttHarness(folder, users={"streamer": secret} if secret else None)
        else:
            harness = RedisHarness(folder, password=secret)
        harness.broker.start()
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.stop_consumer()
        harness.broker.stop()


@pytest.fixture(params=BROKERS)
async def harness(request: pytest.FixtureRequest, harness_factory: HarnessFactory) -> Harness:
    kind: Any = request.param
    return harness_factory(kind)


@pytest.fixture
def mosquitto_broker(harness_factory: HarnessFactory) -> BrokerProcess:
    return harness_factory("mqtt").broker


@pytest.fixture
def redis_broker(harness_factory: HarnessFactory) -> BrokerProcess:
    return harness_factory("redis").broker
