"""One interface over both brokers, so the delivery promises are tested once for each."""

from __future__ import annotations

import abc
import json
import socket
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from streamer.config import MqttSinkConfig, RedisSinkConfig
from streamer.publishing.broker import BrokerSink
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink
from tests.publishing.brokers import BrokerProcess, mosquitto, redis_server
from tests.publishing.support import (
    MqttCollector,
    stalled_mqtt_subscriber,
    stalled_redis_reader,
)

LIFECYCLE_TYPES = {"new", "update", "end", "identity"}
STALLED_VALUE_BYTES = 256 * 1024
STALLED_REQUESTS = 100

# Fast reconnects so a broker restart costs the tests a fraction of a second.
TEST_DELIVERY: dict[str, Any] = {"ack_timeout_s": 5.0, "stop_timeout_s": 5.0}
TEST_RECONNECT: dict[str, Any] = {"initial_delay_s": 0.05, "max_delay_s": 0.2}


def mqtt_settings(port: int, **overrides: Any) -> MqttSinkConfig:
    values: dict[str, Any] = {
        "enabled": True, "port": port, "topic_prefix": "test", "connect_timeout_s": 2.0,
        "stats_interval_s": 0.5, "delivery": dict(TEST_DELIVERY), "reconnect": TEST_RECONNECT,
    }
    delivery = overrides.pop("delivery", {})
    values.update(overrides)
    values["delivery"] = {**TEST_DELIVERY, **delivery}
    return MqttSinkConfig.model_validate(values)


def redis_settings(port: int, **overrides: Any) -> RedisSinkConfig:
    values: dict[str, Any] = {
        "enabled": True, "port": port, "key_prefix": "test", "connect_timeout_s": 2.0,
        "stats_interval_s": 0.5, "ping_interval_s": 0.5, "reconnect": TEST_RECONNECT,
    }
    delivery = overrides.pop("delivery", {})
    values.update(overrides)
    values["delivery"] = {**TEST_DELIVERY, **delivery}
    return RedisSinkConfig.model_validate(values)


class Harness(abc.ABC):
    broker: BrokerProcess
    # Redis keeps every processed write (fsync-always AOF), so it may be killed outright, losing
    # whatever was in flight; mosquitto must save the subscriber's session, so it is stopped.
    outage_is_crash: bool = False

    @abc.abstractmethod
    def make_sink(self, **overrides: Any) -> BrokerSink: ...

    async def start_consumer(self) -> None:
        """Start whatever must listen while the sink publishes (MQTT); nothing for Redis."""

    async def stop_consumer(self) -> None:
        """Stop listening."""

    @abc.abstractmethod
    async def lifecycle_messages(self, cameras: list[str]) -> list[dict[str, Any]]:
        """Lifecycle and identity messages as a consumer received them, in arrival order."""

    @abc.abstractmethod
    async def frames_received(self, camera: str) -> int:
        """Per-frame messages a healthy consumer received."""

    @abc.abstractmethod
    async def stall_a_consumer(self) -> socket.socket:
        """Attach a consumer that never reads."""

    @abc.abstractmethod
    async def consumer_is_stalled(self, stalled: socket.socket) -> bool:
        """Evidence that the stalled consumer really has unread data waiting."""


class MqttHarness(Harness):
    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.broker = mosquitto(folder, users=users)
        self.collector = MqttCollector(self.broker.port, ["test/+/events", "test/+/identities",
                                                          "test/+/tracks"])

    def make_sink(self, **overrides: Any) -> MqttSink:
        return MqttSink(mqtt_settings(self.broker.port, **overrides))

    async def start_consumer(self) -> None:
        await self.collector.start()

    async def stop_consumer(self) -> None:
        await self.collector.stop()

    async def lifecycle_messages(self, cameras: list[str]) -> list[dict[str, Any]]:
        return [json.loads(payload) for topic, payload, _retain in self.collector.received
                if topic.endswith(("/events", "/identities"))]

    async def frames_received(self, camera: str) -> int:
        return len(self.collector.json_on(f"/{camera}/tracks"))

    async def stall_a_consumer(self) -> socket.socket:
        return stalled_mqtt_subscriber(self.broker.port, "test/#")

    async def consumer_is_stalled(self, stalled: socket.socket) -> bool:
        waiting = stalled.recv(1 << 16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return len(waiting) > 0


class RedisHarness(Harness):
    outage_is_crash = True

    def __init__(self, folder: Path, password: str | None = None) -> None:
        self.broker = redis_server(folder, password=password)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.broker.port)

    def make_sink(self, **overrides: Any) -> RedisSink:
        return RedisSink(redis_settings(self.broker.port, **overrides))

    async def lifecycle_messages(self, cameras: list[str]) -> list[dict[str, Any]]:
        messages = []
        async with self.client() as client:
            for camera in cameras:
                for _entry_id, fields in await client.xrange(f"test:{camera}:events"):
                    if fields[b"type"].decode() in LIFECYCLE_TYPES:
                        messages.append(json.loads(fields[b"message"]))
        return messages

    async def frames_received(self, camera: str) -> int:
        async with self.client() as client:
            return int(await client.xlen(f"test:{camera}:tracks"))

    async def stall_a_consumer(self) -> socket.socket:
        async with self.client() as client:
            await client.set("test:large", b"x" * STALLED_VALUE_BYTES)
        return stalled_redis_reader(self.broker.port, "test:large", STALLED_REQUESTS)

    async def consumer_is_stalled(self, stalled: socket.socket) -> bool:
        async with self.client() as client:
            clients = await client.client_list()
        port = stalled.getsockname()[1]
        mine = [c for c in clients if c["addr"].endswith(f":{port}")]
        return bool(mine) and int(mine[0]["omem"]) > 0
