"""Through the real pipeline (embedded Triton, YOLOX, ByteTrack): every sink gets the same events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as redis

from streamer.assembly import build_pipeline, build_sinks
from streamer.config import StreamerConfig
from streamer.inference.server import EmbeddedTritonServer
from tests.publishing.brokers import BrokerProcess
from tests.publishing.support import MqttCollector, validate, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LIFECYCLE = {"new", "update", "end"}


async def test_jsonl_mqtt_and_redis_carry_the_same_valid_events_in_the_same_order(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path,
    mosquitto_broker: BrokerProcess, redis_broker: BrokerProcess,
) -> None:
    lines = tmp_path / "out.jsonl"
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "publishing": {
            "jsonl": {"path": str(lines)},
            "mqtt": {"enabled": True, "port": mosquitto_broker.port, "topic_prefix": "e2e"},
            "redis": {"enabled": True, "port": redis_broker.port, "key_prefix": "e2e"},
        },
        "cameras": [{"name": "street", "url": str(sample_clip), "pacing": "fast", "max_fps": 5}],
    })
    subscriber = MqttCollector(mosquitto_broker.port, ["e2e/#"], client_id="e2e")
    await subscriber.start()
    pipeline = build_pipeline(config, sinks=build_sinks(config))
    await pipeline.start()
    await pipeline.wait()
    await pipeline.stop()
    await wait_until(lambda: subscriber.last_on("e2e/available") == (b"offline", False), 10,
                     "the clean shutdown to reach the subscriber")
    await subscriber.stop()

    from_jsonl = [json.loads(line) for line in lines.read_text().splitlines()]
    frames = [m for m in from_jsonl if m["type"] == "frame"]
    assert len(frames) == pipeline.cameras["street"].stats.processed > 0
    events = [m for m in from_jsonl if m["type"] in LIFECYCLE]
    assert {"new", "end"} <= {m["type"] for m in events}
    for message in from_jsonl:
        validate(message)

    from_mqtt = subscriber.json_on("/street/events")
    frame_ids = [m["id"] for m in frames]
    # one frame, one id, whichever sink it came through
    assert [m["id"] for m in subscriber.json_on("/street/tracks")] == frame_ids
    async with redis.Redis(port=redis_broker.port) as client:
        entries = await client.xrange("e2e:street:events")
        tracks = await client.xrange("e2e:street:tracks")
    assert [fields[b"id"].decode() for _id, fields in tracks] == frame_ids
    from_redis = [json.loads(fields[b"message"]) for _id, fields in entries
                  if fields[b"type"].decode() in LIFECYCLE]
    expected = [m["id"] for m in events]
    assert [m["id"] for m in from_mqtt] == expected
    assert [m["id"] for m in from_redis] == expected
    for message in (*from_mqtt, *from_redis):
        validate(message)
