"""A broker's ACL against the MQTT sink: a denied publish is a failure, never "published".

With MQTT 3.1.1 mosquitto acknowledges a QoS 1 publish its ACL denies and drops it; with MQTT 5 the
PUBACK carries 0x87 Not authorized. The sink speaks 5 (falling back to 3.1.1 only when the broker
refuses 5), counts refused events as dropped, and `streamer check` reports a denied probe.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.assembly import default_assembly
from streamer.check import check_brokers
from streamer.config import CameraConfig, PublishingConfig, StreamerConfig
from streamer.core.events import CameraStatusEvent
from streamer.publishing.broker import BrokerProbeError
from streamer.publishing.mqtt import MqttSink
from tests.publishing.brokers import BrokerProcess, mosquitto
from tests.publishing.harness import mqtt_settings
from tests.publishing.support import (
    MqttCollector,
    SyntheticCamera,
    dedupe,
    drain,
    remaining_length,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

PUBLISHER, PUBLISHER_SECRET = "streamer", "pub-Secret-1"
READER, READER_SECRET = "reader", "read-Secret-2"
# The publisher may write its availability, stats and camera "gate" under "test", and anything
# under "ok"; camera "door" (and "test/check/...") is denied.
ACL = f"""user {PUBLISHER}
topic readwrite test/available
topic readwrite test/stats
topic readwrite test/gate/#
topic readwrite ok/#

user {READER}
topic read #
"""
DENIED_EVENTS = 50
REFUSED_DROP = "events (refused by the broker: not authorized)"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = mosquitto(tmp_path / "mosquitto", users={PUBLISHER: PUBLISHER_SECRET,
                                                      READER: READER_SECRET},
                       acl=ACL, unlimited_queues=False)
    broker.start()
    yield broker
    broker.stop()


def publisher(port: int, **overrides: Any) -> MqttSink:
    return MqttSink(mqtt_settings(port, username=PUBLISHER, password=PUBLISHER_SECRET, **overrides))


def refused_counts(records: list[logging.LogRecord]) -> list[int]:
    found = [re.search(r"refused (\d+) publishes", r.getMessage()) for r in records]
    return [int(m.group(1)) for m in found if m]


async def test_denied_qos1_events_are_dropped_and_counted_never_published(
    acl_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    reader = MqttCollector(acl_broker.port, ["test/+/events"], client_id="reader",
                           username=READER, password=READER_SECRET)
    await reader.start()
    sink = publisher(acl_broker.port, publish_tracks=False)
    gate, door = SyntheticCamera("gate"), SyntheticCamera("door")
    allowed = denied = 0
    with caplog.at_level(logging.INFO, logger="streamer.publishing"):
        await sink.start()
        sink.publish_status(CameraStatusEvent("door", "streaming"))  # retained, denied
        while denied < DENIED_EVENTS:
            _result, events = door.step()
            events = events[: DENIED_EVENTS - denied]
            sink.publish_events(events)
            denied += len(events)
        for _ in range(10):
            _result, events = gate.step()
            sink.publish_events(events)
            allowed += len(events)
        await drain(sink)
        await wait_until(lambda: len(reader.json_on("/gate/events")) >= allowed, 10, "gate events")
        logged_while_running = [r for r in caplog.records if r.levelno == logging.ERROR]
        await sink.stop()
    await reader.stop()

    assert sink.published == allowed, "a denied event must not count as published"
    assert sink.drops.total == {REFUSED_DROP: denied}
    stats = sink.stats()
    assert stats.dropped == denied and stats.buffered == 0  # not retried for ever
    assert stats.errors == denied + 1  # the events and the door's retained status

    received = dedupe(reader.json_on("/events"))
    assert {m["camera"] for m in received} == {"gate"} and len(received) == allowed

    assert logged_while_running, "the first refusal is an ERROR at once, not only at stop"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) <= 2, [r.getMessage() for r in errors]  # once per log_interval_s, + at stop
    assert sum(refused_counts(errors)) == denied + 1
    text = " ".join(r.getMessage() for r in errors)
    assert "test/door/events (Not authorized)" in text and "test/door/status" in text
    assert "test/gate" not in text and f"user '{PUBLISHER}'" in text
    assert PUBLISHER_SECRET not in caplog.text


def check_config(port: int, prefix: str, **overrides: Any) -> StreamerConfig:
    settings = mqtt_settings(port, username=PUBLISHER, password=PUBLISHER_SECRET,
                             topic_prefix=prefix, **overrides)
    publishing = PublishingConfig.model_validate({"jsonl": {"enabled": False}, "mqtt": settings})
    return StreamerConfig(cameras=[CameraConfig(name="c", url="c.mp4")], publishing=publishing)


@pytest.mark.parametrize(
    ("protocol", "why"),
    [
        ("auto", "refused to let user 'streamer' publish on test/check/"),
        ("3.1.1", "did not come back within"),
    ],
)
async def test_check_reports_a_probe_the_acl_denies(
    acl_broker: BrokerProcess, capsys: pytest.CaptureFixture[str], protocol: str, why: str
) -> None:
    config = check_config(acl_broker.port, "test", protocol=protocol)
    assert not await check_brokers(config, default_assembly())
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and " FAIL " in lines[0] and why in lines[0], lines
    if protocol == "auto":
        assert "Not authorized, 0x87" in lines[0] and "allow 'test/#' in its ACL" in lines[0]
    assert PUBLISHER_SECRET not in lines[0]

    assert await check_brokers(check_config(acl_broker.port, "ok", protocol=protocol),
                               default_assembly())
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and " ok " in lines[0] and "published and read back" in lines[0], lines
    assert ("MQTT 5" if protocol == "auto" else "MQTT 3.1.1") in lines[0]


async def _read_varint(reader: asyncio.StreamReader) -> int:
    value, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value


class MqttV311OnlyBroker:
    """Just enough of an MQTT 3.1.1 broker for one client, refusing protocol level 5 as a 3.1.1
    broker does (CONNACK 1, unacceptable protocol version); echoes every publish back."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = (await reader.readexactly(1))[0]
                body = await reader.readexactly(await _read_varint(reader))
                kind = header >> 4
                if kind == 1:  # CONNECT: protocol name (2 + 4 bytes), then the level
                    self.levels.append(body[6])
                    if body[6] != 4:
                        writer.write(b"\x20\x02\x00\x01")
                        await writer.drain()
                        return
                    writer.write(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE: grant QoS 1
                    writer.write(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 3:  # PUBLISH: PUBACK if QoS 1, echo back at QoS 0
                    topic_end = 2 + int.from_bytes(body[:2], "big")
                    qos = (header >> 1) & 3
                    payload = body[topic_end + (2 if qos else 0):]
                    if qos:
                        writer.write(b"\x40\x02" + body[topic_end:topic_end + 2])
                    echo = body[:topic_end] + payload
                    writer.write(b"\x30" + remaining_length(len(echo)) + echo)
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> MqttV311OnlyBroker:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def v311_broker() -> AsyncIterator[MqttV311OnlyBroker]:
    async with MqttV311OnlyBroker() as broker:
        yield broker


async def test_auto_falls_back_to_mqtt_311_when_the_broker_refuses_5(
    v311_broker: MqttV311OnlyBroker, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MqttSink(mqtt_settings(v311_broker.port))
    with caplog.at_level(logging.WARNING, logger="streamer.publishing"):
        detail = await sink.probe()
    assert v311_broker.levels == [5, 4]
    assert "MQTT 3.1.1" in detail and "published and read back" in detail
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "refused MQTT 5; using MQTT 3.1.1" in warnings[0], warnings
    assert "cannot be detected" in warnings[0]


async def test_protocol_5_does_not_fall_back(v311_broker: MqttV311OnlyBroker) -> None:
    sink = MqttSink(mqtt_settings(v311_broker.port, protocol=5))
    with pytest.raises(BrokerProbeError, match="Unsupported protocol version"):
        await sink.probe()
    assert v311_broker.levels == [5]
