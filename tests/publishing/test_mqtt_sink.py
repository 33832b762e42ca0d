"""MQTT topic tree against a real mosquitto: what a subscriber sees, retained state, Last Will."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from streamer.core.events import CameraStatusEvent
from streamer.publishing.messages import decode_embedding
from streamer.publishing.mqtt import MqttSink
from tests.publishing.brokers import BrokerProcess
from tests.publishing.harness import mqtt_settings
from tests.publishing.support import MqttCollector, SyntheticCamera, drain, validate, wait_until

pytestmark = pytest.mark.timeout(60)

PER_CAMERA_TOPICS = {"tracks", "events", "identities", "status"}


async def test_topic_tree_carries_schema_valid_messages(mosquitto_broker: BrokerProcess) -> None:
    live = MqttCollector(mosquitto_broker.port, ["test/#"], client_id="live")
    await live.start()
    sink = MqttSink(mqtt_settings(mosquitto_broker.port, stats_interval_s=0.2))
    await sink.start()
    camera = SyntheticCamera("gate")
    sink.publish_status(CameraStatusEvent("gate", "streaming"))
    identity = camera.identity(dim=128)
    for _ in range(10):
        result, events = camera.step()
        sink.publish_frame(result)
        sink.publish_events(events)
    sink.publish_events([identity])
    await drain(sink)
    await wait_until(lambda: len(live.json_on("test/stats")) >= 2, 10, "periodic stats")
    await sink.stop()
    await wait_until(lambda: live.last_on("test/available") == (b"offline", False), 10, "offline")
    await live.stop()

    topics = {topic for topic, _payload, _retain in live.received}
    assert topics == {"test/available", "test/stats"} | {f"test/gate/{t}" for t in PER_CAMERA_TOPICS}
    for topic, payload, _retain in live.received:
        if topic == "test/available":
            validate(payload.decode(), "availability")
        else:
            validate(json.loads(payload))
    assert len(live.json_on("/gate/tracks")) == 10
    assert [m["type"] for m in live.json_on("/gate/events")].count("new") == 10
    (received_identity,) = live.json_on("/gate/identities")
    assert received_identity["id"] == identity.id and received_identity["name"] == "alice"
    np.testing.assert_allclose(
        decode_embedding(received_identity["embedding"]), identity.embedding, atol=1e-3
    )
    stats = live.json_on("test/stats")[-1]
    assert stats["cameras"]["gate"]["frames"] == 10 and stats["sink"]["connected"] is True
    assert stats["cameras"]["gate"]["gated"] == 0, "every frame of this camera was detected"

    # A subscriber arriving later finds the retained state.
    late = MqttCollector(mosquitto_broker.port, ["test/#"], client_id="late")
    await late.start()
    # Retained messages arrive in no promised order: wait for each one this test reads.
    await wait_until(
        lambda: all(
            late.last_on(topic) is not None
            for topic in ("test/available", "test/gate/status", "test/stats")
        ),
        10,
        "retained availability, status and stats",
    )
    await late.stop()
    retained = {topic: (payload, retain) for topic, payload, retain in late.received}
    assert retained["test/available"] == (b"offline", True)
    status_payload, status_retained = retained["test/gate/status"]
    assert status_retained and json.loads(status_payload)["status"] == "streaming"
    assert retained["test/stats"][1] is True
    assert "test/gate/events" not in retained  # events are not retained state


SERVICE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from streamer.publishing.mqtt import MqttSink
    from streamer.config import MqttSinkConfig

    async def main() -> None:
        sink = MqttSink(MqttSinkConfig(enabled=True, port=int(sys.argv[1]), topic_prefix="test"))
        await sink.start()
        while not sink.connected:
            await asyncio.sleep(0.01)
        print("connected", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_last_will_marks_the_service_offline_when_it_dies(
    mosquitto_broker: BrokerProcess,
) -> None:
    watcher = MqttCollector(mosquitto_broker.port, ["test/available"], client_id="watcher")
    await watcher.start()
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE_SCRIPT, str(mosquitto_broker.port)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert service.stdout is not None
        line = await asyncio.to_thread(service.stdout.readline)
        assert line.strip() == "connected"
        await wait_until(lambda: watcher.last_on("test/available") == (b"online", False), 10,
                         "online")
        service.kill()  # no clean shutdown: only the broker's Last Will can tell
        await wait_until(lambda: watcher.last_on("test/available") == (b"offline", False), 10,
                         "the Last Will")
    finally:
        service.kill()
        service.wait()
        await watcher.stop()
