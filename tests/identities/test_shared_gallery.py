"""Instances sharing one gallery through a real Redis: one global id per person whoever saw whom,
concurrent ids merged once, and a store that dies or starts late loses nobody.

Each instance is a `SharedGallery` with its own cameras; people are synthetic embeddings (one
direction per person, each view a little noise around it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as redis

from streamer.assembly import default_assembly
from streamer.check import check_brokers
from streamer.config import GalleryConfig, StreamerConfig
from streamer.core.events import IdentityMergeEvent
from streamer.core.stats import StatsKind
from streamer.identities.backends import build_gallery
from streamer.identities.gallery import MERGE_LINK, IdentityMerge, InMemoryGallery, Sighting
from streamer.identities.shared import SharedGallery
from tests.publishing.brokers import BrokerProcess, free_port, redis_server

SIZE = 64
NOW = 1_800_000_000.0
SETTLE_S = 10.0  # the longest a test waits for the instances to agree (they take about a second)
POLL_S = 0.05


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class People:
    def __init__(self, count: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.directions = self.rng.normal(size=(count, SIZE))

    def view(self, person: int) -> np.ndarray:
        """Another view: cosine about 0.97 to the person, about 0 to anybody else."""
        return unit(self.directions[person] + self.rng.normal(scale=0.25, size=SIZE))


def gallery_settings(port: int, **overrides: Any) -> GalleryConfig:
    return GalleryConfig.model_validate({
        "backend": "redis",
        "match_threshold": 0.8,
        "redis": {
            "port": port, "poll_s": 0.2, "connect_timeout_s": 1.0,
            "reconnect": {"initial_delay_s": 0.1, "max_delay_s": 0.5},
        },
        **overrides,
    })


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A redis-server that keeps nothing on disk: a restart starts empty."""
    server = redis_server(tmp_path / "redis", persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def instances() -> AsyncIterator[Callable[..., Any]]:
    """make(port, name): a started gallery of one instance; all are closed at the end."""
    started: list[SharedGallery] = []

    async def make(port: int, name: str, start: bool = True) -> SharedGallery:
        gallery = SharedGallery(gallery_settings(port), instance=name)
        await gallery.bind(SIZE, "person_reid")
        if start:
            await gallery.start()
        started.append(gallery)
        return gallery

    yield make
    for gallery in started:
        await gallery.close()


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(POLL_S)


def ids_of(gallery: SharedGallery, tracks: list[tuple[str, int]]) -> list[int | None]:
    return [gallery.global_id_of(camera, track_id) for camera, track_id in tracks]


def agree(galleries: list[SharedGallery], tracks: list[tuple[str, int]]) -> bool:
    """Every instance holds every track, each with the same id on all of them."""
    seen = [ids_of(gallery, tracks) for gallery in galleries]
    return all(None not in ids for ids in seen) and all(ids == seen[0] for ids in seen)


async def test_a_person_seen_by_two_instances_gets_one_global_id(
    store: BrokerProcess, instances: Callable[..., Any]
) -> None:
    north = await instances(store.port, "north")
    south = await instances(store.port, "south")
    people = People(6, seed=1)
    # North's gate sees six people; they leave.
    gate_ids = [(await north.assign(Sighting("gate", p, people.view(p), NOW + p))).global_id
                for p in range(6)]
    for person in range(6):
        await north.track_ended("gate", person)
    assert len(set(gate_ids)) == 6
    await eventually(lambda: agree([north, south], [("gate", p) for p in range(6)]),
                     "south's replica holds north's tracks")
    # Person 4 walks to south's hall, a camera of another instance.
    hall = await south.assign(Sighting("hall", 1, people.view(4), NOW + 40))
    assert hall.global_id == gate_ids[4], "south linked the person north saw"
    await eventually(lambda: north.global_id_of("hall", 1) == gate_ids[4],
                     "north sees the hall track under the person's id")
    (person,) = [i for i in north.identities() if i.global_id == gate_ids[4]]
    assert {(m.camera, m.instance) for m in person.members} == {("gate", "north"), ("hall", "south")}
    assert north.take_merges() == [] and south.take_merges() == [], "nothing was merged"
    assert north.stats.connected and north.stats.outages == 0
    assert south.stats.applied >= 6 and north.stats.sent >= 7


async def drain_merges(galleries: list[SharedGallery], quiet_s: float = 1.5) -> list[IdentityMerge]:
    """Every merge announced until nothing more came for `quiet_s` (several log round trips)."""
    merges: list[IdentityMerge] = []
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        for gallery in galleries:
            taken = gallery.take_merges()
            if taken:
                merges += taken
                last = time.monotonic()
        await asyncio.sleep(POLL_S)
    return merges


async def test_two_instances_minting_for_one_person_at_once_end_with_one_id_and_one_merge(
    store: BrokerProcess, instances: Callable[..., Any]
) -> None:
    north = await instances(store.port, "north")
    south = await instances(store.port, "south")
    people = People(2, seed=2)
    # Person 0 leaves north's gate and enters south's hall 15 s later; neither instance has read
    # the other's track yet (the two assignments run without letting the sync tasks in).
    gate = await north.assign(Sighting("gate", 1, people.view(0), NOW))
    hall = await south.assign(Sighting("hall", 1, people.view(0), NOW + 15))
    stranger = await south.assign(Sighting("hall", 2, people.view(1), NOW + 15))
    assert gate.global_id != hall.global_id, "each instance gave the person an id of its own"
    tracks = [("gate", 1), ("hall", 1)]
    kept = min(gate.global_id, hall.global_id)
    await eventually(lambda: agree([north, south], tracks) and ids_of(north, tracks) == [kept, kept],
                     "both instances settle on the smaller id for both tracks")
    merges = await drain_merges([north, south])
    assert [(m.survivor, m.absorbed, m.reason) for m in merges] == [
        (kept, max(gate.global_id, hall.global_id), MERGE_LINK)
    ], "one merge, announced by one instance"
    assert set(merges[0].cameras) == {"gate", "hall"}
    assert north.global_id_of("hall", 2) == south.global_id_of("hall", 2) == stranger.global_id


async def test_a_redis_restart_without_persistence_loses_no_identity(
    store: BrokerProcess, instances: Callable[..., Any]
) -> None:
    north = await instances(store.port, "north")
    south = await instances(store.port, "south")
    people = People(8, seed=3)
    for person in range(4):
        await north.assign(Sighting("gate", person, people.view(person), NOW + person))
        await north.track_ended("gate", person)
    for person in range(4, 8):
        await south.assign(Sighting("hall", person, people.view(person), NOW + person))
        await south.track_ended("hall", person)
    # Person 2 reaches the hall: one id across the instances.
    await eventually(lambda: agree([north, south], [("gate", 2)]), "south holds north's tracks")
    linked = await south.assign(Sighting("hall", 20, people.view(2), NOW + 30))
    tracks = [("gate", p) for p in range(4)] + [("hall", p) for p in (*range(4, 8), 20)]
    await eventually(lambda: agree([north, south], tracks), "both hold every track")
    before = ids_of(north, tracks)
    assert linked.global_id == north.global_id_of("gate", 2)

    store.stop(crash=True)  # kill -9: the store's log is gone for good
    # Meanwhile each instance goes on alone: south sees person 5 again, north a newcomer.
    again = await south.assign(Sighting("hall", 21, people.view(5), NOW + 40))
    assert again.global_id == south.global_id_of("hall", 5), "matching goes on without the store"
    await north.assign(Sighting("gate", 30, people.view(7), NOW + 45))
    await eventually(lambda: not north.stats.connected and not south.stats.connected,
                     "both noticed the store is gone")
    store.start()  # same port, empty

    tracks += [("hall", 21), ("gate", 30)]
    await eventually(lambda: north.stats.connected and south.stats.connected, "both reconnected")
    await eventually(lambda: agree([north, south], tracks), "both agree on every track again")
    assert ids_of(north, tracks)[: len(before)] == before, "no identity was lost or renumbered"
    # Person 7 was seen by north while the store was down: one id with south's person 7.
    await eventually(lambda: north.global_id_of("gate", 30) == north.global_id_of("hall", 7),
                     "the provisional id merged with the person's")
    assert north.stats.outages == 1 and south.stats.outages == 1
    assert north.stats.snapshots == 1 and south.stats.snapshots == 1, "each re-published once"

    # The store was rebuilt: an instance that starts now learns everybody from it.
    west = await instances(store.port, "west")
    await eventually(lambda: agree([north, west], tracks), "a new instance learns every track")


async def test_an_instance_that_starts_with_the_store_down_matches_locally_and_reconciles(
    tmp_path: Path, instances: Callable[..., Any]
) -> None:
    server = redis_server(tmp_path / "redis", persistent=False)  # not started: nothing listens
    people = People(3, seed=4)
    try:
        started = time.monotonic()
        north = await instances(server.port, "north")
        assert time.monotonic() - started < 5, "start gives up waiting for the store"
        assert not north.stats.connected and north.stats.outages == 1
        assert north.stats.last_error == "connection refused"
        first = await north.assign(Sighting("gate", 1, people.view(0), NOW))
        await north.track_ended("gate", 1)
        again = await north.assign(Sighting("gate", 2, people.view(0), NOW + 20))
        other = await north.assign(Sighting("gate", 3, people.view(1), NOW + 20))
        assert again.global_id == first.global_id != other.global_id, "matching works locally"
        assert north.stats.queued >= 4

        server.start()
        await eventually(lambda: north.stats.connected and north.stats.queued == 0,
                         "north wrote its changes once the store came")
        south = await instances(server.port, "south")
        tracks = [("gate", 1), ("gate", 2), ("gate", 3)]
        await eventually(lambda: agree([north, south], tracks), "south learned north's tracks")
        hall = await south.assign(Sighting("hall", 1, people.view(0), NOW + 60))
        assert hall.global_id == first.global_id
    finally:
        server.stop()


async def test_changes_beyond_the_queue_are_dropped_counted_and_the_replica_written_again(
    tmp_path: Path, instances: Callable[..., Any]
) -> None:
    server = redis_server(tmp_path / "redis", persistent=False)
    people = People(30, seed=5)
    try:
        north = SharedGallery(gallery_settings(server.port, redis={
            "port": server.port, "queue_size": 10, "poll_s": 0.2, "connect_timeout_s": 1.0,
            "reconnect": {"initial_delay_s": 0.1, "max_delay_s": 0.3},
        }), instance="north")
        await north.bind(SIZE, "person_reid")
        await north.start()
        for person in range(30):
            await north.assign(Sighting("gate", person, people.view(person), NOW + person))
        assert north.stats.dropped == 20 and north.stats.queued == 10, "the queue is bounded"
        server.start()
        south = await instances(server.port, "south")
        tracks = [("gate", p) for p in range(30)]
        await eventually(lambda: agree([north, south], tracks), "every track reached south")
        assert north.stats.snapshots == 1
        await north.close()
    finally:
        server.stop()


async def test_a_frame_never_waits_for_a_store_that_does_not_answer(
    store: BrokerProcess, instances: Callable[..., Any]
) -> None:
    north = await instances(store.port, "north")
    people = People(2, seed=6)
    store.pause()  # SIGSTOP: connections stay open, nothing is answered
    try:
        started = time.monotonic()
        for step in range(20):
            await north.assign(Sighting("gate", step, people.view(step % 2), NOW + step))
        assert time.monotonic() - started < 1.0, "assign never awaits the store"
        await eventually(lambda: not north.stats.connected, "the silent store is noticed")
    finally:
        store.resume()
    await eventually(lambda: north.stats.connected and north.stats.queued == 0, "written when back")


async def test_the_log_holds_what_other_tools_can_read(
    store: BrokerProcess, instances: Callable[..., Any]
) -> None:
    north = await instances(store.port, "north")
    await north.assign(Sighting("gate", 1, People(1, seed=7).view(0), NOW))
    await eventually(lambda: north.stats.sent >= 1, "the track was written")
    client = redis.Redis(port=store.port, decode_responses=True)
    try:
        entries = await client.xrange("streamer:gallery:log")
        epoch = await client.get("streamer:gallery:epoch")
    finally:
        await client.aclose()
    record = json.loads(entries[-1][1]["r"])
    assert (record["k"], record["cam"], record["tid"], record["inst"]) == ("track", "gate", 1, "north")
    assert record["gid"] == north.global_id_of("gate", 1)
    assert len(record["emb"]) == 4 * ((SIZE * 2 + 2) // 3), "float16, base64"
    assert epoch



def test_the_configured_backend_is_built() -> None:
    assert type(build_gallery(GalleryConfig())) is InMemoryGallery
    shared = build_gallery(GalleryConfig.model_validate(
        {"backend": "redis", "instance": "north", "redis": {"host": "redis.internal", "port": 6380}}
    ))
    assert isinstance(shared, SharedGallery) and shared.store_stats is not None
    assert (shared.instance, shared.endpoint) == ("north", "redis.internal:6380/0")


async def test_every_merge_is_announced_by_the_in_process_gallery_too() -> None:
    gallery = InMemoryGallery(GalleryConfig(match_threshold=0.8))
    await gallery.bind(SIZE, "person_reid")
    people = People(2, seed=8)
    first = await gallery.assign(Sighting("gate", 1, people.view(0), NOW))
    second = await gallery.assign(Sighting("hall", 1, people.view(1), NOW + 30))
    merged = await gallery.merge([second.global_id, first.global_id])
    assert merged.global_id == min(first.global_id, second.global_id)
    (merge,) = gallery.take_merges()
    assert (merge.survivor, merge.absorbed, merge.reason) == (
        merged.global_id, max(first.global_id, second.global_id), "operator"
    )
    assert gallery.take_merges() == [], "announced once"
    # The merged-away id still names the person for the operator.
    assert (await gallery.confirm(merge.absorbed)).global_id == merged.global_id
    # Its event has the same id whoever announces it.
    events = [IdentityMergeEvent(camera, 1, NOW, merge.survivor, merge.absorbed, merge.reason)
              for camera in ("gate", "hall")]
    assert events[0].id == events[1].id != IdentityMergeEvent("gate", 1, NOW, 1, 2, "link").id


async def test_streamer_check_probes_the_shared_gallery(
    store: BrokerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    def config(port: int) -> StreamerConfig:
        return StreamerConfig.model_validate({
            "publishing": {"jsonl": {"enabled": False}},
            "reid": {"enabled": True},
            "identities": {"gallery": {"backend": "redis", "redis": {"port": port}}},
            "cameras": [{"name": "gate", "url": "gate.mp4"}],
        })

    assert await check_brokers(config(store.port), default_assembly())
    reachable = capsys.readouterr().out
    assert not await check_brokers(config(free_port()), default_assembly())
    refused = capsys.readouterr().out
    assert f"gallery 127.0.0.1:{store.port}/0" in reachable and "ok" in reachable
    assert "shared gallery: 0 changes in streamer:gallery:log" in reachable
    assert "FAIL" in refused and refused.rstrip().endswith("connection refused")


async def test_the_service_shares_one_store_backed_gallery_between_its_stage_and_its_api(
    tmp_path: Path,
) -> None:
    config = StreamerConfig.model_validate({
        "reid": {"enabled": True},
        "identities": {"gallery": {"backend": "redis", "instance": "north"},
                       "calibration_store": str(tmp_path / "calibration.json")},
        "cameras": [{"name": "gate", "url": "gate.mp4"}],
    })
    assembly = default_assembly()
    shared = assembly.build_shared(config)
    assert shared.gallery is not None and isinstance(shared.gallery.gallery, SharedGallery)
    (stage,) = [s for s in assembly.build_stages(config, shared) if s.name == "identities"]
    assert stage.gallery is shared.gallery
    store = stage.registered_stats()[StatsKind.IDENTITY_STORE]
    assert store is shared.gallery.store_stats and store.instance == "north"
    await shared.close()
