"""Two instances' identity stages (real ReID through Triton, real tracker) sharing one real Redis.

Instance north serves camera `gate`, instance south camera `hall`; a real MOT17 pedestrian walks
from one to the other (tests/identities/test_cross_camera.py does the same within one instance).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.config import StreamerConfig, parse_config
from streamer.core.events import Event, IdentityMergeEvent, TrackEvent
from streamer.core.frames import FrameResult
from streamer.identities.shared import SharedGallery
from streamer.identities.stage import IdentityStage
from streamer.inference.client import TritonModel
from tests.identities.harness import PastedCamera
from tests.identities.test_cross_camera import (
    FRAMES_PER_VISIT,
    TRANSIT_S,
    WALKER,
    WALL_HEIGHT,
    WALL_WIDTH,
    _person,
    _standing,
)
from tests.publishing.brokers import BrokerProcess, redis_server

SETTLE_S = 10.0


def _config(camera: str, port: int) -> StreamerConfig:
    return parse_config(
        f"""
reid: {{enabled: true}}
identities:
  confirm_frames: 3
  gallery:
    backend: redis
    redis: {{port: {port}, poll_s: 0.2, connect_timeout_s: 1.0,
             reconnect: {{initial_delay_s: 0.1, max_delay_s: 0.5}}}}
cameras:
  - {{name: {camera}, url: {camera}.mp4}}
"""
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BrokerProcess]:
    server = redis_server(tmp_path / "redis", persistent=False)
    server.start()
    yield server
    server.stop()


async def _instance(
    name: str, camera: str, store: BrokerProcess, models: dict[str, TritonModel]
) -> tuple[IdentityStage, PastedCamera]:
    config = _config(camera, store.port)
    stage = IdentityStage(config, gallery=SharedGallery(config.identities.gallery, instance=name))
    await stage.start(models)
    return stage, PastedCamera(camera, stage, config, WALL_WIDTH, WALL_HEIGHT)


def _track_id(result: FrameResult) -> int:
    assert result.tracks.tracker_id is not None and len(result.tracks) == 1
    return int(result.tracks.tracker_id[0])


def _global_id(result: FrameResult) -> int:
    (global_id,) = result.tracks.data["global_id"].tolist()
    assert global_id is not None, "a confirmed, embedded track has a global id"
    return int(global_id)


async def test_a_pedestrian_walking_between_two_instances_keeps_one_global_id(
    served_models: dict[str, TritonModel], store: BrokerProcess
) -> None:
    north, gate = await _instance("north", "gate", store, served_models)
    south, hall = await _instance("south", "hall", store, served_models)
    try:
        for _ in range(FRAMES_PER_VISIT):
            at_gate = await gate.show([_standing(_person(WALKER, "first"), 250)])
        walker_id, gate_track = _global_id(at_gate), _track_id(at_gate)
        deadline = time.monotonic() + SETTLE_S
        while south.gallery.global_id_of("gate", gate_track) != walker_id:
            assert time.monotonic() < deadline, "south never learned north's track"
            await asyncio.sleep(0.05)

        hall.ts = gate.ts + TRANSIT_S
        for _ in range(FRAMES_PER_VISIT):
            in_hall = await hall.show([_standing(_person(WALKER, "last"), 60)])
        assert _global_id(in_hall) == walker_id, "the other instance's camera keeps the id"
    finally:
        for stage in (north, south):
            await stage.stop()
            await stage.gallery.close()  # given to the stage: its owner closes it


async def test_ids_given_while_the_store_was_silent_merge_into_one_announced_once(
    served_models: dict[str, TritonModel], store: BrokerProcess
) -> None:
    north, gate = await _instance("north", "gate", store, served_models)
    south, hall = await _instance("south", "hall", store, served_models)
    events: list[Event] = []
    try:
        store.pause()  # each instance gives the walker an id of its own
        for _ in range(FRAMES_PER_VISIT):
            at_gate = await gate.show([_standing(_person(WALKER, "first"), 250)])
            events += at_gate.events
        hall.ts = gate.ts + TRANSIT_S
        for _ in range(FRAMES_PER_VISIT):
            in_hall = await hall.show([_standing(_person(WALKER, "last"), 60)])
            events += in_hall.events
        gate_id, hall_id, gate_track = _global_id(at_gate), _global_id(in_hall), _track_id(at_gate)
        assert gate_id != hall_id
        store.resume()

        # The walker stays in the hall; the gate is empty. Both go on until they agree.
        kept = min(gate_id, hall_id)
        deadline = time.monotonic() + SETTLE_S
        while True:
            in_hall = await hall.show([_standing(_person(WALKER, "last"), 60)])
            events += in_hall.events + (await gate.show([])).events
            if _global_id(in_hall) == kept and south.gallery.global_id_of("gate", gate_track) == kept:
                break
            assert time.monotonic() < deadline, "the two ids never merged"
            await asyncio.sleep(0.05)
        for _ in range(20):  # a second announcement would come within a few log round trips
            events += (await hall.show([_standing(_person(WALKER, "last"), 60)])).events
            events += (await gate.show([])).events
            await asyncio.sleep(0.05)
    finally:
        store.resume()
        for stage in (north, south):
            await stage.stop()
            await stage.gallery.close()

    merges = [e for e in events if isinstance(e, IdentityMergeEvent)]
    assert [(m.global_id, m.merged_id, m.reason) for m in merges] == [
        (kept, max(gate_id, hall_id), "link")
    ], "one identity_merge event, from one instance"
    assert merges[0].camera in {"gate", "hall"} and set(merges[0].cameras) == {"gate", "hall"}
    # The hall's track says so itself when its id was the one merged away.
    updates = [e for e in events if isinstance(e, TrackEvent) and e.camera == "hall"
               and e.after is not None and e.after.get("global_id") == kept]
    assert hall_id == kept or updates, "the hall track's update carries the id that stayed"
    assert north.stats.failures == south.stats.failures == 0
