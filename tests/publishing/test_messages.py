"""The message schema: every message type validates, ids are shared by sinks, secrets stay hidden."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from streamer.config import ConfigError, parse_config
from streamer.core.events import (
    PUBLISHED_TYPES,
    BaseEvent,
    CameraStatusEvent,
    LineCrossEvent,
    LineState,
    Published,
    TrackEvent,
    TrackEventType,
    ZoneEvent,
    ZoneEventType,
    ZoneState,
)
from streamer.publishing.messages import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    camera_status_message,
    decode_embedding,
    event_message,
    frame_message,
    load_schema,
    state_message,
    stats_message,
    to_json,
)
from tests.publishing.support import SyntheticCamera, validate


def test_every_schema_file_is_a_valid_json_schema() -> None:
    for message_type in SCHEMA_FILES:
        schema = load_schema(message_type)
        jsonschema.Draft202012Validator.check_schema(schema)


SNAPSHOT = {"track_id": 1, "box": [0, 0, 1, 1], "score": 0.5, "first_seen_ts": 1.0,
            "last_seen_ts": 1.0, "frames": 1}

# One of each event and state type name, with the summary the events page shows for it.
EXAMPLES: list[tuple[Published, str]] = [
    (TrackEvent(TrackEventType.NEW, "c", 4, 1, 1.0, None, SNAPSHOT), "new track #4"),
    (TrackEvent(TrackEventType.UPDATE, "c", 4, 2, 1.5, SNAPSHOT, {**SNAPSHOT, "name": "alice"}),
     "track #4 updated"),
    (TrackEvent(TrackEventType.END, "c", 4, 3, 2.0, SNAPSHOT, None, snapshot_id="0" * 32),
     "track #4 ended"),
    (ZoneEvent(ZoneEventType.ENTER, "c", "door", 4, 4, 2.0, occupancy=1), "entered zone door"),
    (ZoneEvent(ZoneEventType.EXIT, "c", "door", 4, 9, 4.5, dwell_s=75.5, occupancy=0),
     "left zone door after 1m 15s"),
    (ZoneEvent(ZoneEventType.LOITERING, "c", "door", 4, 7, 3.0, dwell_s=30.0, occupancy=1),
     "loitering in zone door for 30s"),
    (LineCrossEvent("c", "gate", "in", 4, 8, 4.0, counts={"in": 1, "out": 0}),
     "crossed line gate going in"),
    (SyntheticCamera("c").identity(), "face embedding of track #0, matched alice, global id 7"),
    (CameraStatusEvent("c", "backoff", "read timeout"), "status: backoff (read timeout)"),
    (ZoneState("c", "door", 0, 4.5, "e1"), ""),
    (LineState("c", "gate", {"in": 1, "out": 0}, 4.0, "e2", crossed="in"), ""),
]


def published_message(item: Published) -> dict[str, Any]:
    if isinstance(item, ZoneState | LineState):
        return state_message(item)
    if isinstance(item, CameraStatusEvent):
        return camera_status_message(item)
    return event_message(item)  # type: ignore[arg-type]


def test_every_event_and_state_type_name_has_an_example() -> None:
    named = {str(name) for published in PUBLISHED_TYPES for name in published.type_names}
    examples = {json.loads(to_json(published_message(item)))["type"] for item, _ in EXAMPLES}
    assert examples == named


def example_id(value: object) -> str | None:
    return str(getattr(value, "type", "")) or None


@pytest.mark.parametrize(("item", "summary"), EXAMPLES, ids=example_id)
def test_every_type_publishes_what_the_schema_it_owns_allows(item: Published, summary: str) -> None:
    message = json.loads(to_json(published_message(item)))
    owned = json.loads((SCHEMA_DIR / type(item).schema).read_text("utf-8"))
    jsonschema.Draft202012Validator(owned).validate(message)
    assert message["type"] in type(item).type_names
    names = owned["properties"]["type"]
    assert set(names.get("enum", [names.get("const")])) == set(type(item).type_names)


@pytest.mark.parametrize(("item", "summary"), [e for e in EXAMPLES if e[1]], ids=example_id)
def test_every_event_says_what_happened_in_a_few_words(item: Published, summary: str) -> None:
    assert isinstance(item, BaseEvent)
    assert item.summary() == summary


def test_frame_and_lifecycle_messages_validate() -> None:
    camera = SyntheticCamera("door-1")
    kinds = set()
    for _ in range(5):
        result, events = camera.step()
        validate(json.loads(to_json(frame_message(result))))
        for event in events:
            message = json.loads(to_json(event_message(event)))
            validate(message)
            kinds.add(message["type"])
    assert kinds == {"new", "end"}


def test_frame_messages_say_whether_the_detector_ran() -> None:
    """A frame the motion gate left out carries the last tracks over and says so."""
    import dataclasses

    result, _events = SyntheticCamera("door-1").step()
    detected = json.loads(to_json(frame_message(result)))
    carried = json.loads(to_json(frame_message(dataclasses.replace(result, detected=False))))
    for message in (detected, carried):
        validate(message)
    assert (detected["detected"], carried["detected"]) == (True, False)
    assert carried["tracks"] == detected["tracks"]
    without = {k: v for k, v in detected.items() if k != "detected"}
    with pytest.raises(jsonschema.ValidationError, match="'detected' is a required property"):
        jsonschema.validate(without, load_schema("frame"))


def test_update_and_camera_stop_events_validate() -> None:
    before = {"track_id": 3, "box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "first_seen_ts": 1.0,
              "last_seen_ts": 2.0, "frames": 2}
    after = {**before, "name": "alice", "global_id": np.int64(4)}  # identity stages add numpy values
    update = TrackEvent(TrackEventType.UPDATE, "c", 3, 9, 2.0, before, after)
    stopped = TrackEvent(TrackEventType.END, "c", 3, 9, 2.0, after, None)  # CameraTracker.finish()
    for event in (update, stopped):
        validate(json.loads(to_json(event_message(event))))


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [(TrackEventType.NEW, SNAPSHOT, None), (TrackEventType.NEW, None, None),
     (TrackEventType.UPDATE, None, SNAPSHOT), (TrackEventType.END, None, SNAPSHOT)],
)
def test_schema_rejects_inconsistent_lifecycle_events(
    kind: TrackEventType, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    event = TrackEvent(kind, "c", 1, 1, 1.0, before, after)
    with pytest.raises(jsonschema.ValidationError):
        validate(json.loads(to_json(event_message(event))))


@pytest.mark.parametrize(("dtype", "tolerance"), [("float16", 1e-3), ("float32", 0.0)])
def test_identity_embedding_is_compact_and_round_trips(dtype: str, tolerance: float) -> None:
    event = SyntheticCamera("c").identity(dim=512)
    vector = event.embedding
    message = json.loads(to_json(event_message(event, dtype)))
    validate(message)
    assert message["embedding"]["dim"] == 512 and message["embedding"]["dtype"] == dtype
    assert len(to_json(message)) < len(json.dumps(vector.tolist())) / 2
    np.testing.assert_allclose(decode_embedding(message["embedding"]), vector, atol=tolerance)


def test_every_sink_publishes_the_same_event_id() -> None:
    result, events = SyntheticCamera("c").step()
    first = event_message(events[0], "float16")
    second = event_message(events[0], "float32")
    assert first["id"] == second["id"]
    assert event_message(events[0])["id"] != frame_message(result)["id"]


def test_status_and_stats_messages_validate() -> None:
    validate(camera_status_message(CameraStatusEvent("c", "backoff", "read timeout")))
    validate(stats_message(
        started_ts=1.0, ts=5.0,
        cameras={"c": {"status": "online", "frames": 3, "events": 2, "fps": 1.5, "tracks": 1,
                       "latency_ms": 20.0, "last_capture_ts": 4.0}},
        sink={"name": "mqtt", "endpoint": "h:1", "connected": True, "published": 1, "buffered": 0,
              "dropped": 0, "errors": 0},
    ))
    validate("offline", "availability")
    with pytest.raises(jsonschema.ValidationError):
        validate("gone", "availability")


CONFIG = """
cameras:
  - {name: c, url: clip.mp4}
publishing:
  mqtt: {enabled: true, username: streamer, password: "${MQTT_PASSWORD}"}
  redis: {enabled: true, password: %s}
"""


def test_passwords_come_from_the_environment_and_never_show() -> None:
    config = parse_config(CONFIG % "1234", env={"MQTT_PASSWORD": "s3cret-value"})
    mqtt, redis = config.publishing.mqtt, config.publishing.redis
    assert mqtt.password is not None and mqtt.password.get_secret_value() == "s3cret-value"
    assert redis.password is not None and redis.password.get_secret_value() == "1234"
    assert "s3cret-value" not in repr(config) and "1234" not in str(config.publishing)


def test_unknown_sink_key_is_reported_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.replace("username:", "usernme:") % "x", env={"MQTT_PASSWORD": "p"})
    assert caught.value.lines == [
        "<config>:5: publishing.mqtt.usernme: unknown key (did you mean 'username'?)"
    ]
