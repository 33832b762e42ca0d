"""Camera switches over MQTT: only listed cameras, at a bounded rate, each naming its client.

Against a real mosquitto with the ACL the README documents: the broker lets each client publish
switches only under its own client id, so the id the service logs is the one that sent it.
Previously any MQTT client switched any camera, without limit (40 messages, 40 restarts, 40
rewrites of the config file), logged only as "by MQTT".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from streamer.publishing.mqtt import MqttSink
from tests.publishing.brokers import BrokerProcess, mosquitto
from tests.publishing.harness import mqtt_settings
from tests.publishing.support import MqttCollector, wait_until

pytestmark = pytest.mark.timeout(60)

SERVICE, SERVICE_SECRET = "streamer", "svc-Secret-1"
OPERATOR, OPERATOR_SECRET = "ops", "ops-Secret-2"
# The README's ACL, for topic prefix "test": the service reads the switches and writes the rest;
# any client may publish a switch only on the topic that ends with its own client id.
ACL = f"""pattern write test/+/enabled/set/%c

user {SERVICE}
topic readwrite test/#

user {OPERATOR}
topic read test/+/enabled
"""
PER_MINUTE = 3


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = mosquitto(tmp_path / "mosquitto", users={SERVICE: SERVICE_SECRET, OPERATOR: OPERATOR_SECRET},
                       acl=ACL, unlimited_queues=False)
    broker.start()
    yield broker
    broker.stop()


async def test_only_listed_cameras_switch_at_a_bounded_rate_and_the_sender_is_named(
    acl_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MqttSink(mqtt_settings(
        acl_broker.port, username=SERVICE, password=SERVICE_SECRET, publish_tracks=False,
        camera_control=["gate"], camera_control_per_minute=PER_MINUTE,
    ))
    states = {"gate": True, "door": True}
    switched: list[tuple[str, bool, str]] = []

    async def switch(camera: str, enabled: bool, who: str) -> None:
        switched.append((camera, enabled, who))
        states[camera] = enabled
        sink.set_camera_states(states)

    sink.enable_camera_control(switch)
    sink.set_camera_states(states)
    watcher = MqttCollector(acl_broker.port, ["test/+/enabled"], client_id="watcher",
                            username=OPERATOR, password=OPERATOR_SECRET)
    await watcher.start()
    with caplog.at_level(logging.WARNING, logger="streamer.publishing"):
        await sink.start()
        await wait_until(lambda: watcher.last_on("test/gate/enabled") is not None, 10, "gate's state")
        assert watcher.last_on("test/door/enabled") is None, "an unlisted camera offers no switch"
        async with aiomqtt.Client("127.0.0.1", acl_broker.port, identifier="ops-1",
                                  username=OPERATOR, password=OPERATOR_SECRET) as operator:
            await operator.publish("test/gate/enabled/set/ops-2", "OFF")  # another's id: dropped
            await operator.publish("test/gate/enabled/set", "OFF")  # no id: the ACL drops it
            await operator.publish("test/door/enabled/set/ops-1", "OFF")  # not listed
            for index in range(40):
                await operator.publish("test/gate/enabled/set/ops-1", "OFF" if index % 2 == 0 else "ON")
        await asyncio.sleep(2.0)
        await sink.stop()
    await watcher.stop()

    assert len(switched) == PER_MINUTE, switched
    assert {(camera, who) for camera, _on, who in switched} == {("gate", "MQTT client 'ops-1'")}
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert ("camera door from MQTT client 'ops-1': the camera is not in "
            "publishing.mqtt.camera_control") in warnings
    assert "publishing.mqtt.camera_control_per_minute" in warnings
    assert "ops-2" not in warnings, "the broker dropped the impersonation"
