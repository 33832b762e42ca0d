"""Zone and line events through the sinks: schema-valid events, retained occupancy and crossing
counts on a real mosquitto, the occupancy hash and crossing counters on a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as redis

from streamer.analytics.stage import ZoneLineStage
from streamer.config import JsonlSinkConfig
from streamer.core.events import Event, LineCrossEvent, ZoneEvent, ZoneEventType
from streamer.publishing.jsonl import JsonlSink
from streamer.publishing.messages import EMBEDDING_DTYPES, event_message, to_json
from streamer.publishing.mqtt import MqttSink
from streamer.publishing.redis_sink import RedisSink
from tests.analytics.scripted import Script, config, feet_box
from tests.publishing.brokers import BrokerProcess
from tests.publishing.harness import mqtt_settings, redis_settings
from tests.publishing.support import MqttCollector, SyntheticCamera, drain, validate, wait_until

pytestmark = pytest.mark.timeout(60)

SQUARE = [[200, 200], [400, 200], [400, 400], [200, 400]]


async def scripted_events() -> tuple[Script, list[Event]]:
    """Two people: one enters the bay and leaves down across the door line, one walks up it."""
    script = Script(ZoneLineStage(config(
        zones=[{"name": "bay", "points": SQUARE, "exit_after_s": 0, "loiter_after_s": 0.5}],
        lines=[{"name": "door", "points": [[100, 450], [700, 450]]}],
    )))
    for step in range(20):  # person 1: into the bay, stays 1 s, then down across y=450
        y = 300 if step < 10 else 300 + (step - 9) * 20
        await script.frame({1: feet_box(300, y), 2: feet_box(600, 560 - step * 10)})
    return script, script.events


async def test_events_and_state_reach_mosquitto(mosquitto_broker: BrokerProcess) -> None:
    script, events = await scripted_events()
    kinds = sorted({e.type for e in events})
    assert kinds == ["line_cross", "loitering", "zone_enter", "zone_exit"]
    live = MqttCollector(mosquitto_broker.port, ["test/#"], client_id="live")
    await live.start()
    sink = MqttSink(mqtt_settings(mosquitto_broker.port))
    await sink.start()
    for result in script.results:
        sink.publish(result)
    await drain(sink)
    await wait_until(lambda: live.last_on("test/cam/lines/door") is not None, 10, "line state")
    await sink.stop()
    await live.stop()
    received = live.json_on("/cam/events")
    assert [m["id"] for m in received] == [e.id for e in events]
    for message in received:
        validate(message)
    for frame in live.json_on("/cam/tracks"):
        validate(frame)
    assert any(t.get("zones") == ["bay"] for f in live.json_on("/cam/tracks") for t in f["tracks"])

    late = MqttCollector(mosquitto_broker.port, ["test/cam/zones/#", "test/cam/lines/#"],
                         client_id="late")
    await late.start()
    await wait_until(lambda: late.last_on("test/cam/lines/door") is not None, 10, "retained")
    await late.stop()
    zone_payload, zone_retained = late.last_on("test/cam/zones/bay") or (b"", False)
    zone = json.loads(zone_payload)
    validate(zone)
    assert zone_retained and zone["occupancy"] == 0  # person 1 left
    line_payload, line_retained = late.last_on("test/cam/lines/door") or (b"", False)
    line = json.loads(line_payload)
    validate(line)
    assert line_retained and line["counts"] == {"in": 1, "out": 1}


async def test_occupancy_hash_and_crossings_counted_once_in_redis(redis_broker: BrokerProcess) -> None:
    script, events = await scripted_events()
    crossings = [e for e in events if isinstance(e, LineCrossEvent)]
    entered = next(e for e in events if isinstance(e, ZoneEvent) and e.type == ZoneEventType.ENTER)
    sink = RedisSink(redis_settings(redis_broker.port))
    await sink.start()
    sink.publish_events([entered])
    await drain(sink)
    async with redis.Redis(port=redis_broker.port) as client:
        assert await client.hget("test:cam:zones", "bay") == b"1"
        for result in script.results:
            sink.publish(result)
        sink.publish_events(crossings)  # sent again, as after a lost reply: counted once
        await drain(sink)
        assert await client.hget("test:cam:zones", "bay") == b"0"
        counts = await client.hgetall("test:cam:lines")
        assert counts == {b"door:in": b"1", b"door:out": b"1"}
        entries = await client.xrange("test:cam:events")
        messages = [json.loads(fields[b"message"]) for _id, fields in entries]
        for message in messages:
            validate(message)
        assert {m["type"] for m in messages} == {"zone_enter", "zone_exit", "loitering", "line_cross"}
    await sink.stop()


async def test_state_kept_through_an_outage_on_disk_still_lands(
    mosquitto_broker: BrokerProcess, redis_broker: BrokerProcess, tmp_path: Path
) -> None:
    """Events spilled to disk while the brokers were away still set occupancy, counts and the
    identity record once they are back (the sinks route on the state kept with each event)."""
    script, events = await scripted_events()
    identity = SyntheticCamera("cam").identity(dim=32, kind="reid")
    for broker in (mosquitto_broker, redis_broker):
        await asyncio.to_thread(broker.stop)
    spill = {"spill_dir": tmp_path / "spill", "memory_events": 2}
    sinks = [MqttSink(mqtt_settings(mosquitto_broker.port, delivery=spill)),
             RedisSink(redis_settings(redis_broker.port, delivery=spill, identity_ttl_s=600))]
    for sink in sinks:
        await sink.start()
        for result in script.results:
            sink.publish_events(result.events)
        sink.publish_events([identity])
        assert sink.buffer.spilled == len(events) + 1 - 2
    for broker in (mosquitto_broker, redis_broker):
        await asyncio.to_thread(broker.start)
    for sink in sinks:
        await drain(sink)
        await sink.stop()
    async with redis.Redis(port=redis_broker.port) as client:
        assert await client.hget("test:cam:zones", "bay") == b"0"
        assert await client.hgetall("test:cam:lines") == {b"door:in": b"1", b"door:out": b"1"}
        record = await client.hgetall(f"test:identity:cam:reid:{identity.track_id}")
        assert record[b"id"].decode() == identity.id
        vector = np.frombuffer(record[b"vector"], dtype=EMBEDDING_DTYPES[record[b"dtype"].decode()])
        np.testing.assert_allclose(vector, identity.embedding, atol=1e-3)
        assert (record[b"global_id"], record[b"similarity"]) == (b"7", b"0.8700000047683716")
    late = MqttCollector(mosquitto_broker.port, ["test/cam/zones/#", "test/cam/lines/#"],
                         client_id="after-outage")
    await late.start()
    await wait_until(lambda: late.last_on("test/cam/lines/door") is not None
                     and late.last_on("test/cam/zones/bay") is not None, 10, "retained state")
    await late.stop()
    zone = json.loads((late.last_on("test/cam/zones/bay") or (b"", False))[0])
    line = json.loads((late.last_on("test/cam/lines/door") or (b"", False))[0])
    last_exit = [e for e in events if isinstance(e, ZoneEvent)][-1]
    assert (zone["occupancy"], zone["event_id"]) == (0, last_exit.id)
    assert (line["counts"], line["event_id"]) == ({"in": 1, "out": 1}, events[-1].id)


async def test_jsonl_writes_zone_and_line_events(tmp_path: Path) -> None:
    script, events = await scripted_events()
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(JsonlSinkConfig(enabled=True, path=str(out)))
    await sink.start()
    for result in script.results:
        sink.publish(result)
    await sink.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    written = [m for m in lines if m["type"] != "frame"]
    assert [m["id"] for m in written] == [e.id for e in events]
    for message in lines:
        validate(message)


def test_zone_and_line_messages_validate_and_schemas_reject_nonsense() -> None:
    import jsonschema

    exit_event = ZoneEvent(ZoneEventType.EXIT, "cam", "bay", 3, 10, 1.0, dwell_s=2.5, occupancy=0)
    crossing = LineCrossEvent("cam", "door", "in", 3, 10, 1.0, counts={"in": 1, "out": 0})
    for event in (exit_event, crossing):
        validate(json.loads(to_json(event_message(event))))
        # the snapshots stage attaches a picture later, keeping the event's id
        pictured = dataclasses.replace(event, snapshot_id="a1b2")
        message = json.loads(to_json(event_message(pictured)))
        validate(message)
        assert (message["id"], message["snapshot_id"]) == (event.id, "a1b2")
    with pytest.raises(jsonschema.ValidationError):  # an exit always says how long
        validate(json.loads(to_json(event_message(
            ZoneEvent(ZoneEventType.EXIT, "cam", "bay", 3, 10, 1.0, occupancy=0)))))
    script_frame = {"track_id": 1, "box": [0, 0, 1, 1], "score": 0.5, "zones": "bay"}
    with pytest.raises(jsonschema.ValidationError):  # a list of names, never a bare name
        validator_frame = dict(frame_message_stub(), tracks=[script_frame])
        validate(validator_frame)


def frame_message_stub() -> dict[str, object]:
    return {"schema_version": 2, "type": "frame", "id": "x", "camera": "cam", "frame_index": 0,
            "capture_ts": 1.0, "width": 2, "height": 2, "latency_ms": 0.0, "timings_ms": {},
            "tracks": []}


async def test_a_start_replaces_what_a_crashed_run_left(
    mosquitto_broker: BrokerProcess, redis_broker: BrokerProcess
) -> None:
    from streamer.assembly import analytics_layout, build_sinks
    from streamer.config import StreamerConfig

    config = StreamerConfig.model_validate({
        "publishing": {
            "jsonl": {"enabled": False},
            "mqtt": {"enabled": True, "port": mosquitto_broker.port, "topic_prefix": "test"},
            "redis": {"enabled": True, "port": redis_broker.port, "key_prefix": "test"},
        },
        "cameras": [{"name": "cam", "url": "x.mp4",
                     "zones": [{"name": "bay", "points": SQUARE}],
                     "lines": [{"name": "door", "points": [[100, 450], [700, 450]]}]}],
    })
    assert analytics_layout(config).zones == {"cam": ["bay"]}
    # What a run killed with people inside left behind:
    stale = MqttSink(mqtt_settings(mosquitto_broker.port))
    await stale.start()
    stale.publish_events([ZoneEvent(ZoneEventType.ENTER, "cam", "bay", 1, 5, 1.0, occupancy=3)])
    await drain(stale)
    await stale._connected_client().publish("test/cam/lines/door", b"{}", qos=1, retain=True)
    await stale.stop()
    async with redis.Redis(port=redis_broker.port) as client:
        await client.hset("test:cam:zones", "bay", 3)
        await client.hset("test:cam:lines", "door:in", 41)

    sinks = build_sinks(config)
    for sink in sinks:
        await sink.start()
    for sink in sinks:
        assert isinstance(sink, MqttSink | RedisSink)
        await drain(sink)
    late = MqttCollector(mosquitto_broker.port, ["test/cam/zones/#", "test/cam/lines/#"],
                         client_id="after-restart")
    await late.start()
    await wait_until(lambda: late.last_on("test/cam/lines/door") is not None
                     and late.last_on("test/cam/zones/bay") is not None, 10, "retained state")
    await late.stop()
    zone = json.loads((late.last_on("test/cam/zones/bay") or (b"", False))[0])
    line = json.loads((late.last_on("test/cam/lines/door") or (b"", False))[0])
    validate(zone)
    validate(line)
    assert zone["occupancy"] == 0 and zone["event_id"] is None
    assert line["counts"] == {"in": 0, "out": 0}
    async with redis.Redis(port=redis_broker.port) as client:
        assert await client.hget("test:cam:zones", "bay") == b"0"
        assert await client.hget("test:cam:lines", "door:in") == b"41"  # running totals stay
    for sink in sinks:
        await sink.stop()
