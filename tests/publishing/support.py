"""Synthetic cameras and subscribers, so sinks are tested without Triton."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import jsonschema
import numpy as np

from streamer.core.detections import Detections
from streamer.core.events import EmbeddingKind, Event, IdentityEvent, TrackEvent, TrackEventType
from streamer.core.frames import FrameResult
from streamer.publishing.broker import BrokerSink
from streamer.publishing.messages import load_schema

WAIT_POLL_S = 0.01


@functools.cache
def validator(message_type: str) -> jsonschema.protocols.Validator:
    schema = load_schema(message_type)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(message: Any, message_type: str | None = None) -> None:
    """Raise unless the message validates against the schema file of its type."""
    validator(message_type or message["type"]).validate(message)


@dataclass
class SyntheticCamera:
    """Frames with a few moving tracks and the lifecycle events a tracker would emit."""

    name: str
    frame_index: int = 0
    next_track: int = 1
    open_tracks: dict[int, dict[str, Any]] = field(default_factory=dict)
    tracks_per_frame: int = 3

    def step(self) -> tuple[FrameResult, list[Event]]:
        """One frame: a new track every frame, the oldest ends when more than 3 are open."""
        now = time.time()
        events: list[Event] = []
        track_id = self.next_track
        self.next_track += 1
        snapshot = {"track_id": track_id, "box": [10.0, 20.0, 110.0, 220.0], "score": 0.9,
                    "first_seen_ts": now, "last_seen_ts": now, "frames": 1}
        self.open_tracks[track_id] = snapshot
        events.append(self._event(TrackEventType.NEW, track_id, now, None, snapshot))
        if len(self.open_tracks) > self.tracks_per_frame:
            oldest = min(self.open_tracks)
            ended = self.open_tracks.pop(oldest)
            events.append(self._event(TrackEventType.END, oldest, now, ended, None))
        ids = sorted(self.open_tracks)
        tracks = Detections(
            xyxy=np.tile(np.array([[10, 20, 110, 220]], np.float32), (len(ids), 1)),
            confidence=np.full(len(ids), 0.9, np.float32),
            class_id=np.zeros(len(ids), np.int64),
            tracker_id=np.array(ids, np.int64),
        )
        result = FrameResult(
            camera=self.name, frame_index=self.frame_index, capture_ts=now, width=640, height=480,
            tracks=tracks, latency_s=0.05, timings={"infer": 0.02, "track": 0.001}, events=events,
        )
        self.frame_index += 1
        return result, events

    def identity(self, dim: int = 8, kind: EmbeddingKind = "face") -> IdentityEvent:
        """An identity event as the identity stage emits it (raw float32 embedding)."""
        track_id = max(self.open_tracks) if self.open_tracks else 0
        vector = np.linspace(-1.0, 1.0, dim, dtype=np.float32)
        return IdentityEvent(
            camera=self.name, track_id=track_id, frame_index=self.frame_index,
            capture_ts=time.time(), kind=kind, embedding=vector, name="alice",
            similarity=np.float32(0.87), global_id=np.int64(7),  # type: ignore[arg-type]
            quality=0.74, samples=3,
        )

    def _event(self, kind: TrackEventType, track_id: int, ts: float, before: dict[str, Any] | None,
               after: dict[str, Any] | None) -> TrackEvent:
        return TrackEvent(kind, self.name, track_id, self.frame_index, ts, before, after)


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(WAIT_POLL_S)


async def drain(sink: BrokerSink, timeout_s: float = 10.0) -> None:
    await wait_until(lambda: sink.connected and sink.buffer.buffered == 0, timeout_s,
                     f"{sink.name} to deliver everything")


def dedupe(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the first copy of each id: what a consumer does with at-least-once delivery."""
    seen: set[str] = set()
    unique = []
    for message in messages:
        if message["id"] not in seen:
            seen.add(message["id"])
            unique.append(message)
    return unique


@dataclass
class MqttCollector:
    """A subscriber with a persistent session that keeps reconnecting, recording what arrives."""

    port: int
    topics: list[str]
    client_id: str = "test-collector"
    username: str | None = None
    password: str | None = None
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)  # topic, payload, retain
    connections: int = 0
    _task: asyncio.Task[None] | None = None
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False,
                    username=self.username, password=self.password, timeout=5,
                ) as client:
                    self.connections += 1
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.received.append((str(message.topic), payload, bool(message.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def json_on(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _r in self.received if t.endswith(suffix)]

    def last_on(self, topic: str) -> tuple[bytes, bool] | None:
        found = [(p, r) for t, p, r in self.received if t == topic]
        return found[-1] if found else None


def remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


RECEIVE_BUFFER_BYTES = 4096


def stalled_mqtt_subscriber(port: int, topic: str) -> socket.socket:
    """A subscriber that connects and subscribes (QoS 1) with a tiny socket buffer, then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.connect(("127.0.0.1", port))
    keepalive_s = 600
    variable = _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s)
    body = variable + _mqtt_string("stalled-subscriber")
    sock.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
    subscribe = struct.pack("!H", 1) + _mqtt_string(topic) + bytes([1])
    sock.sendall(bytes([0x82]) + remaining_length(len(subscribe)) + subscribe)
    return sock


def stalled_redis_reader(port: int, key: str, requests: int) -> socket.socket:
    """A client that asks for a large value many times and never reads the answers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.connect(("127.0.0.1", port))
    command = f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode()
    sock.sendall(command * requests)
    return sock
