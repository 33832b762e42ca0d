"""Zones and lines through the real pipeline (embedded Triton, YOLOX, ByteTrack) on the sample clip:
a line across the road people walk along and a zone on the road give crossings both ways and zone
events, schema-valid on a real mosquitto and redis-server, with matching retained state, counters
and stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as redis

from streamer.assembly import build_pipeline, build_sinks, build_stages
from streamer.config import StreamerConfig
from streamer.core.stats import AnalyticsStats, StatsKind
from streamer.inference.server import EmbeddedTritonServer
from tests.publishing.brokers import BrokerProcess
from tests.publishing.support import MqttCollector, validate, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ZONE_TYPES = {"zone_enter", "zone_exit", "loitering"}
# 768x576 clip: the road runs left-right through y 180-330; the line stands across it at x = 470
# (A at the bottom, B at the top, so `eastbound` is walking to the right of the picture).
LINE = {"name": "crossing", "points": [[470, 340], [470, 170]],
        "directions": ["eastbound", "westbound"]}
ROAD = {"name": "road", "points": [[250, 180], [700, 180], [700, 330], [250, 330]]}


async def test_crossings_and_zone_events_reach_mosquitto_and_redis(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path,
    mosquitto_broker: BrokerProcess, redis_broker: BrokerProcess,
) -> None:
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "publishing": {
            "jsonl": {"enabled": False},
            "mqtt": {"enabled": True, "port": mosquitto_broker.port, "topic_prefix": "e2e"},
            "redis": {"enabled": True, "port": redis_broker.port, "key_prefix": "e2e"},
        },
        "cameras": [{"name": "street", "url": str(sample_clip), "pacing": "fast",
                     "lines": [LINE], "zones": [ROAD]}],
    })
    subscriber = MqttCollector(mosquitto_broker.port, ["e2e/#"], client_id="e2e-zones")
    await subscriber.start()
    pipeline = build_pipeline(config, sinks=build_sinks(config), stages=build_stages(config))
    await pipeline.start()
    await pipeline.wait()
    await pipeline.stop()
    await wait_until(lambda: subscriber.last_on("e2e/available") == (b"offline", False), 10,
                     "the clean shutdown to reach the subscriber")
    await subscriber.stop()

    events = [m for m in subscriber.json_on("/street/events") if m["type"] != "camera_status"]
    for message in events:
        validate(message)
    crossings = [m for m in events if m["type"] == "line_cross"]
    directions = {m["direction"] for m in crossings}
    assert directions == {"eastbound", "westbound"}, crossings
    # once per track, line and direction
    assert len({(m["track_id"], m["direction"]) for m in crossings}) == len(crossings)
    zone_events = [m for m in events if m["type"] in ZONE_TYPES]
    entered = {m["track_id"] for m in zone_events if m["type"] == "zone_enter"}
    exited = {m["track_id"] for m in zone_events if m["type"] == "zone_exit"}
    assert entered and entered == exited  # the clip ends: whoever was on the road leaves it
    kinds = [m["type"] for m in zone_events]
    assert kinds.count("zone_enter") == kinds.count("zone_exit")
    frames = subscriber.json_on("/street/tracks")
    for frame in frames:
        validate(frame)
    assert any(track.get("zones") == ["road"] for frame in frames for track in frame["tracks"])

    final_counts = crossings[-1]["counts"]
    assert sum(final_counts.values()) == len(crossings)
    late = MqttCollector(mosquitto_broker.port, ["e2e/street/zones/#", "e2e/street/lines/#"],
                         client_id="e2e-late")  # what a dashboard connecting now finds
    await late.start()
    await wait_until(lambda: late.last_on("e2e/street/zones/road") is not None
                     and late.last_on("e2e/street/lines/crossing") is not None, 10, "retained")
    await late.stop()
    line_state, line_retained = late.last_on("e2e/street/lines/crossing") or (b"{}", False)
    assert line_retained and json.loads(line_state)["counts"] == final_counts
    zone_state, zone_retained = late.last_on("e2e/street/zones/road") or (b"{}", False)
    assert zone_retained and json.loads(zone_state)["occupancy"] == 0
    validate(json.loads(line_state))
    validate(json.loads(zone_state))

    async with redis.Redis(port=redis_broker.port) as client:
        stored = [json.loads(fields[b"message"])
                  for _id, fields in await client.xrange("e2e:street:events")]
        counters = await client.hgetall("e2e:street:lines")
        occupancy = await client.hgetall("e2e:street:zones")
    analytics = [m for m in stored if m["type"] in ZONE_TYPES | {"line_cross"}]
    # the same events, in the same order, in both brokers
    assert [m["id"] for m in analytics] == [
        m["id"] for m in events if m["type"] in ZONE_TYPES | {"line_cross"}
    ]
    for message in analytics:
        validate(message)
    assert {k.decode(): int(v) for k, v in counters.items()} == {
        f"crossing:{direction}": count for direction, count in final_counts.items() if count
    }
    assert occupancy == {b"road": b"0"}

    (stats,) = pipeline.registry.read(StatsKind.ANALYTICS).values()
    assert isinstance(stats, AnalyticsStats)
    assert stats.line_crossings == {("street", "crossing", d): n for d, n in final_counts.items()}
    assert stats.occupancy == {("street", "road"): 0}
    for kind in ZONE_TYPES:
        assert stats.zone_events[("street", "road", kind)] == [
            m["type"] for m in zone_events].count(kind)
