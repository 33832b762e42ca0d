"""Redis layout against a real redis-server: streams, latest state, identity records, caps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis.asyncio as redis

from streamer.core.events import CameraStatusEvent
from streamer.publishing.redis_sink import RedisSink
from tests.publishing.brokers import BrokerProcess
from tests.publishing.harness import redis_settings
from tests.publishing.support import SyntheticCamera, drain, validate

pytestmark = pytest.mark.timeout(60)


async def test_streams_state_and_identity_records(redis_broker: BrokerProcess) -> None:
    sink = RedisSink(redis_settings(redis_broker.port, identity_ttl_s=600))
    await sink.start()
    camera = SyntheticCamera("lobby")
    sink.publish_status(CameraStatusEvent("lobby", "streaming"))
    for _ in range(6):
        result, events = camera.step()
        sink.publish_frame(result)
        sink.publish_events(events)
    identity = camera.identity(dim=256, kind="reid")
    sink.publish_events([identity])
    await drain(sink)
    async with redis.Redis(port=redis_broker.port) as client:
        assert await client.get("test:available") == b"online"
        assert 0 < await client.ttl("test:available") <= 3  # expires if the service dies
        entries = await client.xrange("test:lobby:events")
        types = [fields[b"type"].decode() for _id, fields in entries]
        assert types.count("new") == 6 and types.count("identity") == 1
        assert types.count("camera_status") == 1
        for _id, fields in entries:
            message = json.loads(fields[b"message"])
            validate(message)
            assert fields[b"id"].decode() == message["id"]
        assert await client.xlen("test:lobby:tracks") == 6

        state = await client.hgetall("test:lobby:state")
        assert state[b"status"] == b"streaming"
        latest = json.loads(state[b"frame"])
        validate(latest)
        assert latest["frame_index"] == 5 and int(state[b"tracks"]) == len(latest["tracks"])

        key = f"test:identity:lobby:reid:{identity.track_id}"
        record = await client.hgetall(key)
        assert record[b"id"].decode() == identity.id
        assert (record[b"dtype"], int(record[b"dim"])) == (b"float32", 256)
        vector = np.frombuffer(record[b"vector"], dtype="<f4")
        np.testing.assert_array_equal(vector, identity.embedding)
        assert record[b"name"] == b"alice"
        assert 0 < await client.ttl(key) <= 600

        stats_payload = await client.get("test:stats")
        assert stats_payload is not None
        validate(json.loads(stats_payload))

        await sink.stop()
        assert await client.get("test:available") == b"offline"
        assert await client.ttl("test:available") == -1


@pytest.mark.parametrize(("stream", "setting"), [("events", "events_maxlen"), ("tracks", "tracks_maxlen")])
async def test_streams_are_capped_approximately(
    redis_broker: BrokerProcess, stream: str, setting: str
) -> None:
    cap = 100
    sink = RedisSink(redis_settings(redis_broker.port, delivery={"linger_s": 0}, **{setting: cap}))
    await sink.start()
    camera = SyntheticCamera("yard")
    produced = 1500
    for _ in range(produced):
        result, events = camera.step()
        sink.publish_frame(result)
        sink.publish_events(events)
        if sink.buffer.buffered > sink.delivery.batch_size:
            await drain(sink)
    await drain(sink)
    await sink.stop()
    async with redis.Redis(port=redis_broker.port) as client:
        length = await client.xlen(f"test:yard:{stream}")
    assert cap <= length < produced / 2, length  # "~" trims whole nodes: a little above the cap
