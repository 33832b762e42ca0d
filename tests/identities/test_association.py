"""How the calibrated gallery decides who is who across cameras (synthetic people, real gallery).

Each camera adds its own bias to every embedding (light, angle, background), as real cameras do:
one person's two cameras then look less alike than two people on one camera, and no single raw
threshold separates them.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config import CalibrationConfig, GalleryConfig
from streamer.identities.calibration import Calibration
from streamer.identities.gallery import InMemoryGallery, Sighting, UnknownIdentity

SIZE = 64
NOW = 1_800_000_000.0
BIAS = 1.2  # a camera's bias, relative to a person's own appearance


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class Site:
    """People and biased cameras; `seen(person, camera)` is one view of a person on a camera."""

    def __init__(self, people: int, cameras: list[str], seed: int = 0, noise: float = 0.25) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.people = rng.normal(size=(people, SIZE))
        self.bias = {camera: BIAS * unit(rng.normal(size=SIZE)) * np.sqrt(SIZE) for camera in cameras}
        self.noise = noise

    def seen(self, person: int, camera: str) -> np.ndarray:
        noise = self.rng.normal(scale=self.noise * np.sqrt(SIZE) / 8, size=SIZE)
        return unit(self.people[person] + self.bias[camera] + noise)


def settings(**calibration: object) -> GalleryConfig:
    defaults: dict[str, object] = {"min_camera_tracks": 10, "min_negatives": 10}
    return GalleryConfig(calibration=CalibrationConfig(**{**defaults, **calibration}))


async def walk(gallery: InMemoryGallery, site: Site, visits: list[tuple[str, range, float]]) -> dict[
    tuple[str, int], int
]:
    """People on cameras, two arriving every 5 s per camera, in time order across cameras: the
    global id of each (camera, person)."""
    sightings = sorted(
        (at + (offset // 2) * 5.0, camera, person)
        for camera, people, at in visits
        for offset, person in enumerate(people)
    )
    ids: dict[tuple[str, int], int] = {}
    for ts, camera, person in sightings:
        track = (1000 if camera == "hall" else 0) + person
        match = await gallery.assign(Sighting(camera, track, site.seen(person, camera), ts))
        ids[(camera, person)] = match.global_id
    for _ts, camera, person in sightings:
        await gallery.track_ended(camera, (1000 if camera == "hall" else 0) + person)
    return ids


async def test_a_camera_bias_keeps_one_person_apart_until_the_gallery_removes_it() -> None:
    site = Site(100, ["gate", "hall"], seed=1)
    raw = InMemoryGallery(settings(enabled=False))
    calibrated = InMemoryGallery(settings())
    for gallery in (raw, calibrated):
        await gallery.bind(SIZE, "person_reid")
    # The gate sees people 0-39 while the hall sees people 60-99 (the gallery learns the cameras,
    # and that people on both at the same moment differ); then people 40-59 go gate -> hall.
    results = {}
    for name, gallery in (("raw", raw), ("calibrated", calibrated)):
        await walk(gallery, site, [("gate", range(40), NOW), ("hall", range(60, 100), NOW + 0.5)])
        later = [("gate", range(40, 60), NOW + 400), ("hall", range(40, 60), NOW + 430)]
        ids = await walk(gallery, site, later)
        results[name] = sum(ids[("gate", p)] == ids[("hall", p)] for p in range(40, 60))
        owners: dict[int, set[int]] = {}
        for (_camera, person), global_id in ids.items():
            owners.setdefault(global_id, set()).add(person)
        assert all(len(people) == 1 for people in owners.values()), f"{name}: people mixed"
    assert results["raw"] <= 2, "raw embeddings: the camera bias hides the person"
    assert results["calibrated"] >= 16, "calibrated: most people keep their id across cameras"
    pair = next(row for row in calibrated.calibration.summary() if row["cameras"] == ["gate", "hall"])
    assert pair["source"] == "calibrated" and pair["negatives"] >= 10


async def test_a_track_seen_at_the_same_moment_on_another_camera_is_never_the_same_person() -> None:
    site = Site(2, ["gate", "hall"], seed=2)
    gallery = InMemoryGallery(settings(enabled=False))
    await gallery.bind(SIZE, "person_reid")
    same = unit(site.people[0])
    first = await gallery.assign(Sighting("gate", 1, same, NOW))
    at_once = await gallery.assign(Sighting("hall", 1, same, NOW + 0.2))
    later = await gallery.assign(Sighting("hall", 2, same, NOW + 10))
    assert at_once.global_id != first.global_id, "on two cameras at once: two people"
    assert later.global_id in (first.global_id, at_once.global_id)


async def test_a_near_tie_between_two_people_links_nobody() -> None:
    gallery = InMemoryGallery(settings(enabled=False, min_camera_tracks=1000), )
    await gallery.bind(SIZE, "person_reid")
    rng = np.random.default_rng(3)
    twin_a = unit(rng.normal(size=SIZE))
    twin_b = unit(twin_a + 0.05 * rng.normal(size=SIZE))
    a = await gallery.assign(Sighting("gate", 1, twin_a, NOW))
    b = await gallery.assign(Sighting("gate", 2, twin_b, NOW + 0.1))
    assert a.global_id != b.global_id
    for key in (1, 2):
        await gallery.track_ended("gate", key)
    # Calibration off means no margin: the closer twin wins.
    plain = await gallery.assign(Sighting("hall", 1, unit(twin_a + twin_b), NOW + 30))
    assert plain.global_id in (a.global_id, b.global_id)
    careful = InMemoryGallery(settings(min_camera_tracks=1000))
    await careful.bind(SIZE, "person_reid")
    a = await careful.assign(Sighting("gate", 1, twin_a, NOW))
    b = await careful.assign(Sighting("gate", 2, twin_b, NOW + 0.1))
    for key in (1, 2):
        await careful.track_ended("gate", key)
    tie = await careful.assign(Sighting("hall", 1, unit(twin_a + twin_b), NOW + 30))
    assert tie.global_id not in (a.global_id, b.global_id), "a near tie is left unlinked"


async def test_operator_decisions_change_what_the_gallery_decides_later() -> None:
    site = Site(3, ["gate", "hall"], seed=4)
    gallery = InMemoryGallery(settings(enabled=False))
    await gallery.bind(SIZE, "person_reid")
    anna = unit(site.people[0])
    gate = await gallery.assign(Sighting("gate", 1, anna, NOW))
    await gallery.track_ended("gate", 1)
    hall = await gallery.assign(Sighting("hall", 1, anna, NOW + 20))
    assert hall.global_id == gate.global_id, "the same picture links"
    # The operator says the hall track is somebody else: it leaves, and stays apart.
    _, split_off = await gallery.split(gate.global_id, [("hall", 1)])
    again = await gallery.assign(Sighting("hall", 1, anna, NOW + 21))
    assert again.global_id == split_off.global_id != gate.global_id
    await gallery.track_ended("hall", 1)
    # Identities the operator kept apart are never merged; others are, and then confirmed.
    with pytest.raises(ValueError, match="kept apart"):
        await gallery.merge([gate.global_id, split_off.global_id])
    other = await gallery.assign(Sighting("lobby", 1, unit(site.people[1]), NOW + 40))
    joined = await gallery.merge([gate.global_id, other.global_id])
    assert joined.global_id == min(gate.global_id, other.global_id) and joined.confirmed
    assert {(m.camera, m.track_id) for m in joined.members} == {("gate", 1), ("lobby", 1)}
    confirmed = await gallery.confirm(joined.global_id)
    assert confirmed.confirmed
    with pytest.raises(UnknownIdentity):
        await gallery.confirm(12345)


async def test_a_face_takes_the_identity_across_cameras_whatever_the_body_says() -> None:
    site = Site(3, ["gate", "hall"], seed=5)
    gallery = InMemoryGallery(settings(enabled=False))
    await gallery.bind(SIZE, "person_reid")
    # Anna at the gate, named by her face. In the hall she wears a coat: the body does not match.
    gate = await gallery.assign(Sighting("gate", 1, unit(site.people[0]), NOW))
    assert await gallery.name_track("gate", 1, "anna") == gate.global_id
    await gallery.track_ended("gate", 1)
    coat = await gallery.assign(Sighting("hall", 1, unit(site.people[2]), NOW + 30))
    assert coat.global_id != gate.global_id
    assert await gallery.name_track("hall", 1, "anna") == gate.global_id, "the name wins"
    # Later body views of the named track never move it elsewhere.
    await gallery.assign(Sighting("hall", 1, unit(site.people[2]), NOW + 31))
    (anna,) = [i for i in gallery.identities() if i.global_id == gate.global_id]
    assert {(m.camera, m.track_id) for m in anna.members} == {("gate", 1), ("hall", 1)}
    # Somebody else's face never joins anna, whatever the body says.
    await gallery.assign(Sighting("lobby", 1, unit(site.people[0]), NOW + 60))
    bob = await gallery.name_track("lobby", 1, "bob")
    assert bob is not None and bob != gate.global_id


def test_calibration_is_plain_data_that_restores_the_same_thresholds() -> None:
    settings_ = CalibrationConfig(min_negatives=3, min_camera_tracks=1)
    calibration = Calibration(settings_, default_threshold=0.45)
    rng = np.random.default_rng(6)
    for index in range(5):
        calibration.learn_track("gate", unit(rng.normal(size=SIZE)))
        calibration.add_negative(("gate", index), ("hall", index), 0.1 * index)
    calibration.add_positive(("gate", 9), ("hall", 9), 0.6)
    for seconds in (12.0, 15.0, 20.0, 18.0, 14.0):
        calibration.add_transit("gate", "hall", seconds)
    restored = Calibration(settings_, default_threshold=0.45)
    restored.restore(calibration.to_dict(), SIZE)
    assert restored.summary() == calibration.summary()
    assert restored.threshold("hall", "gate").source == "calibrated"
    assert not restored.transit_plausible("gate", "hall", 1.0)
    assert restored.transit_plausible("gate", "hall", 16.0)
    assert np.allclose(restored.centres["gate"].mean, calibration.centres["gate"].mean)
