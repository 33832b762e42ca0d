"""Camera status messages stay on the brokers (MQTT retained, Redis state hash): they must never
hold a credential. Each form's camera really fails to connect (127.0.0.1:9), the watchdog derives
its state and detail as in the pipeline, and the sink publishes it to a real broker."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as redis

from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink
from tests.publishing.conftest import HarnessFactory
from tests.publishing.harness import mqtt_settings, redis_settings
from tests.publishing.support import MqttCollector, drain, validate, wait_until
from tests.support.credentials import FORMS, FailedCamera, fail_to_connect, leaks

pytestmark = pytest.mark.timeout(90)


async def failed_cameras() -> list[FailedCamera]:
    """Every form's camera after its first failed attempt; the watchdog knows every camera's URL."""
    urls = [form.url for form in FORMS]
    return list(await asyncio.gather(*(fail_to_connect(form, urls) for form in FORMS)))


def check_status(message: dict[str, object], form_camera: str) -> None:
    validate(message)
    assert message["camera"] == form_camera and message["status"] == "backoff"
    assert str(message["detail"]).startswith(("ConnectionRefusedError", "OSError")), message


async def test_retained_mqtt_status_holds_no_credential(harness_factory: HarnessFactory) -> None:
    broker = harness_factory("mqtt").broker
    failed = await failed_cameras()
    sink = MqttSink(mqtt_settings(broker.port))
    await sink.start()
    for camera in failed:
        sink.publish_status(camera.status)
    await drain(sink)
    await sink.stop()

    late = MqttCollector(broker.port, ["test/+/status"], client_id="late-reader")
    await late.start()
    await wait_until(lambda: len(late.received) >= len(FORMS), 10, "every retained status")
    await late.stop()

    retained = {topic: payload for topic, payload, retain in late.received if retain}
    assert sorted(retained) == sorted(f"test/{form.camera}/status" for form in FORMS)
    for form in FORMS:
        check_status(json.loads(retained[f"test/{form.camera}/status"]), form.camera)
    found = {topic: leaks(payload.decode(), FORMS) for topic, payload in retained.items()}
    assert found == {topic: [] for topic in retained}


async def test_redis_state_hash_and_events_hold_no_credential(harness_factory: HarnessFactory) -> None:
    broker = harness_factory("redis").broker
    failed = await failed_cameras()
    sink = RedisSink(redis_settings(broker.port))
    await sink.start()
    for camera in failed:
        sink.publish_status(camera.status)
    await drain(sink)
    await sink.stop()

    stored: dict[str, str] = {}
    async with redis.Redis(port=broker.port) as client:
        for form in FORMS:
            state = await client.hgetall(f"test:{form.camera}:state")
            assert state[b"status"] == b"backoff"
            check_status(json.loads(state[b"status_message"]), form.camera)
            stored[f"{form.camera}:state"] = repr(state)
            stored[f"{form.camera}:events"] = repr(await client.xrange(f"test:{form.camera}:events"))
    found = {key: leaks(value, FORMS) for key, value in stored.items()}
    assert found == {key: [] for key in stored}
