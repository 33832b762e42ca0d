"""The cross-camera gallery: global ids unique across instances and restarts, stopped cameras
aged out, and the vectorised matching giving the same ids as the per-entry loop it replaced."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from streamer.config import CalibrationConfig, GalleryConfig
from streamer.identities.gallery import CONCURRENT_S, GlobalIds, InMemoryGallery, Sighting

SIZE = 32
JS_SAFE_INTEGER = 2**53
THRESHOLD = 0.8
NOW = 1_760_000_000.0  # a fixed wall clock (2025-10)


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _people(count: int, seed: int) -> np.ndarray:
    return np.stack([_unit(v) for v in np.random.default_rng(seed).normal(size=(count, SIZE))])


def _view(person: np.ndarray, rng: np.random.Generator, noise: float = 0.06) -> np.ndarray:
    """Another view of the person: cosine about 0.9 to the person, about 0 to anyone else."""
    return _unit(person + rng.normal(scale=noise, size=SIZE))


def _frozen(at: float) -> GlobalIds:
    return GlobalIds(clock=lambda: at)


async def _assign_people(gallery: InMemoryGallery, camera: str, people: np.ndarray) -> list[int]:
    ids = []
    for track_id, person in enumerate(people):
        ids.append((await gallery.assign(Sighting(camera, track_id, person, NOW))).global_id)
    return ids


async def test_global_ids_of_two_instances_and_of_a_restart_never_collide() -> None:
    settings = GalleryConfig(match_threshold=THRESHOLD)
    people = _people(20, seed=1)
    # Two instances started in the same instant: only their random tags tell them apart.
    first = InMemoryGallery(settings, ids=GlobalIds(clock=lambda: NOW, tag=1))
    second = InMemoryGallery(settings, ids=GlobalIds(clock=lambda: NOW, tag=2))
    first_ids = await _assign_people(first, "gate", people[:10])
    second_ids = await _assign_people(second, "gate", people[10:])
    # The first instance restarted a second later, with the same tag by bad luck.
    restarted = InMemoryGallery(settings, ids=GlobalIds(clock=lambda: NOW + 1.0, tag=1))
    restarted_ids = await _assign_people(restarted, "gate", people[10:])

    everyone = first_ids + second_ids + restarted_ids
    assert len(set(everyone)) == len(everyone), "no id is given twice"
    assert min(restarted_ids) > max(first_ids), "a restarted instance's ids come later"
    assert all(isinstance(i, int) and 0 < i < JS_SAFE_INTEGER for i in everyone)


def test_each_gallery_draws_its_own_random_instance_tag() -> None:
    tags = {GlobalIds().tag for _ in range(4)}
    assert len(tags) > 1, "four galleries drew the same tag (chance 1 in 2**45)"
    ids = GlobalIds(clock=lambda: NOW)
    assert len({ids.next() for _ in range(1000)}) == 1000, "a burst borrows the next ticks"


async def test_entries_of_a_stopped_camera_age_out_like_ended_tracks() -> None:
    settings = GalleryConfig(match_threshold=THRESHOLD, window_s=60.0)
    gallery = InMemoryGallery(settings)
    rng = np.random.default_rng(2)
    walker, other = _people(2, seed=2)
    seen_at_gate = await gallery.assign(Sighting("gate", 1, walker, NOW))
    # The gate camera stops: its track never ends. The hall keeps going well past the window.
    await gallery.assign(Sighting("hall", 1, other, NOW + 30))
    await gallery.assign(Sighting("hall", 1, other, NOW + 61))

    again = await gallery.assign(Sighting("hall", 2, _view(walker, rng), NOW + 62))
    assert again.global_id != seen_at_gate.global_id and again.similarity is None
    assert len(gallery) == 2, "the stopped camera's entry is gone"


@dataclass
class _Entry:
    camera: str
    track_id: int
    global_id: int
    embedding: np.ndarray
    first_seen_ts: float
    last_seen_ts: float
    active: bool = True


class LoopGallery:
    """The per-entry Python loop the gallery used before it was vectorised (reference), with
    calibration off: raw similarities, one threshold, no margin, no mutual check."""

    def __init__(self, settings: GalleryConfig) -> None:
        self.settings = settings
        self.threshold = settings.threshold_for(None)
        self.entries: dict[tuple[str, int], _Entry] = {}
        self.last_id = 0

    def assign(self, sighting: Sighting) -> tuple[int, float | None]:
        oldest = sighting.ts - self.settings.window_s
        for key in [k for k, e in self.entries.items() if not e.active and e.last_seen_ts < oldest]:
            del self.entries[key]
        key = (sighting.camera, sighting.track_id)
        entry = self.entries.get(key)
        candidate, similarity = self._best(sighting, entry)
        matched = candidate is not None and similarity >= self.threshold
        if entry is None:
            if matched and candidate:
                global_id = candidate.global_id
            else:
                self.last_id += 1
                global_id = self.last_id
            entry = _Entry(
                sighting.camera, sighting.track_id, global_id, sighting.embedding, sighting.ts, sighting.ts
            )
            self.entries[key] = entry
        else:
            alone = all(e is entry or e.global_id != entry.global_id for e in self.entries.values())
            if matched and candidate and candidate.global_id != entry.global_id and alone:
                entry.global_id = candidate.global_id
            entry.embedding, entry.last_seen_ts, entry.active = sighting.embedding, sighting.ts, True
        excess = len(self.entries) - self.settings.max_entries
        if excess > 0:
            for old in sorted(self.entries, key=lambda k: self.entries[k].last_seen_ts)[:excess]:
                del self.entries[old]
        same = matched and candidate is not None and candidate.global_id == entry.global_id
        return entry.global_id, (round(similarity, 4) if same else None)

    def _best(self, sighting: Sighting, own: _Entry | None) -> tuple[_Entry | None, float]:
        busy = {
            e.global_id
            for e in self.entries.values()
            if e.camera == sighting.camera and e.active and e is not own
        }
        best, best_similarity = None, -1.0
        started = own.first_seen_ts if own is not None else sighting.ts
        for entry in self.entries.values():
            if entry is own or entry.global_id in busy:
                continue
            if (entry.first_seen_ts - CONCURRENT_S <= sighting.ts
                    and entry.last_seen_ts + CONCURRENT_S >= started):
                continue  # seen during this track's time: somebody else
            similarity = float(entry.embedding @ sighting.embedding)
            if similarity > best_similarity:
                best, best_similarity = entry, similarity
        return best, best_similarity

    def track_ended(self, camera: str, track_id: int) -> None:
        entry = self.entries.get((camera, track_id))
        if entry is not None:
            entry.active = False


@pytest.mark.parametrize("offload_min_entries", [10**9, 0], ids=["on-the-loop", "in-a-thread"])
async def test_vectorised_gallery_matches_like_the_loop_it_replaced(offload_min_entries: int) -> None:
    """A random walk of 40 people over 4 cameras: tracks come, are re-embedded and end; entries
    are dropped beyond max_entries. Both give the same partition into ids and similarities."""
    settings = GalleryConfig(
        match_threshold=THRESHOLD, window_s=1e9, max_entries=60, mutual=False,
        calibration=CalibrationConfig(enabled=False),
    )
    gallery = InMemoryGallery(settings, offload_min_entries=offload_min_entries)
    reference = LoopGallery(settings)
    rng = np.random.default_rng(3)
    people = _people(40, seed=3)
    live: dict[tuple[str, int], int] = {}  # (camera, track id) -> person
    new_to_old: dict[int, int] = {}
    next_track = 0
    for step in range(600):
        camera = f"cam{rng.integers(4)}"
        if live and rng.random() < 0.15:
            ended = list(live)[rng.integers(len(live))]
            del live[ended]
            await gallery.track_ended(*ended)
            reference.track_ended(*ended)
            continue
        mine = [k for k in live if k[0] == camera]
        if mine and rng.random() < 0.5:
            key = mine[rng.integers(len(mine))]
        else:
            next_track += 1
            key = (camera, next_track)
            live[key] = int(rng.integers(len(people)))
        sighting = Sighting(key[0], key[1], _view(people[live[key]], rng), NOW + step)
        found = await gallery.assign(sighting)
        expected_id, expected_similarity = reference.assign(sighting)
        assert new_to_old.setdefault(found.global_id, expected_id) == expected_id, f"step {step}"
        assert found.similarity == expected_similarity, f"step {step}"
    assert len(set(new_to_old.values())) == len(new_to_old), "one id per reference id"
    assert len(new_to_old) < next_track, "some tracks joined others' ids"


async def test_a_large_table_is_matched_off_the_event_loop() -> None:
    """While a sighting is matched against a large table, other coroutines keep running."""
    gallery = InMemoryGallery(GalleryConfig(match_threshold=0.99), offload_min_entries=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    embedding = _people(1, seed=5)[0]
    await gallery.assign(Sighting("gate", 1, embedding, NOW))
    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await gallery.assign(Sighting("hall", 1, embedding, NOW))
    running.cancel()
    assert ticks > before, "the event loop ran other work during the matrix product"


@pytest.mark.parametrize(
    ("configured", "model", "expected"),
    [
        (None, "person_reid", 0.86),
        (None, "person_reid_retail", 0.93),
        (None, "my_reid", 0.86),
        (0.75, "person_reid_retail", 0.75),
    ],
)
async def test_threshold_defaults_to_the_measured_value_of_the_reid_model(
    configured: float | None, model: str, expected: float
) -> None:
    """Defaults from `python -m studies.reid_threshold`; a configured value wins."""
    gallery = InMemoryGallery(GalleryConfig(match_threshold=configured))
    await gallery.bind(SIZE, model)
    assert gallery.match_threshold == expected
