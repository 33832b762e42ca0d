"""The operator's decisions and the site's calibration, kept in a file across restarts (real
gallery, synthetic people on biased cameras, real files)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from streamer.config import CalibrationConfig, GalleryConfig
from streamer.identities.decisions import (
    CorruptDecisionStore,
    DecisionStore,
    NothingToChange,
    OperatorGallery,
)
from streamer.identities.gallery import InMemoryGallery
from tests.identities.site import Site, calibrate

SIZE = 64
MODEL = "person_reid"
NOW = 1_800_000_000.0
CROWDS = {"gate": range(0, 12), "hall": range(12, 24)}
ANNA, BOB, CARL = 30, 31, 32


def settings() -> GalleryConfig:
    return GalleryConfig(calibration=CalibrationConfig(min_camera_tracks=5, min_negatives=10))


async def started(path: Path | None, model: str = MODEL, size: int = SIZE) -> OperatorGallery:
    gallery = OperatorGallery(InMemoryGallery(settings()), DecisionStore(path) if path else None)
    await gallery.bind(size, model)
    return gallery


async def a_day_of_decisions(gallery: OperatorGallery, site: Site) -> tuple[int, int, int]:
    """Anna walks gate -> hall and is confirmed; Bob's hall track is split off his gate one;
    Carl's two tracks are merged. Returns (anna, bob, bob's split-off) global ids."""
    await calibrate(gallery, site, CROWDS, NOW)
    anna_gate = await gallery.assign(site.sighting(ANNA, "gate", 1, NOW + 100))
    await gallery.track_ended("gate", 1)
    anna_hall = await gallery.assign(site.sighting(ANNA, "hall", 1, NOW + 130))
    assert anna_hall.global_id == anna_gate.global_id, "one person, one id across the two cameras"
    await gallery.confirm(anna_gate.global_id)
    bob = await gallery.assign(site.sighting(BOB, "gate", 2, NOW + 200))
    await gallery.track_ended("gate", 2)
    bob_hall = await gallery.assign(site.sighting(BOB, "hall", 2, NOW + 225))
    assert bob_hall.global_id == bob.global_id
    _, split_off = await gallery.split(bob.global_id, [("hall", 2)])
    carl_gate = await gallery.assign(site.sighting(CARL, "gate", 3, NOW + 300))
    carl_hall = await gallery.assign(site.sighting(CARL, "hall", 3, NOW + 300.2))  # at once: two
    await gallery.merge([carl_gate.global_id, carl_hall.global_id])
    return anna_gate.global_id, bob.global_id, split_off.global_id


async def test_decisions_and_calibration_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "calibration.json"
    site = Site(SIZE, 40, ["gate", "hall"], seed=11)
    first = await started(path)
    anna, bob, split_off = await a_day_of_decisions(first, site)
    pairs = first.pairs()
    gate_hall = next(row for row in pairs if row["cameras"] == ["gate", "hall"])
    assert gate_hall["source"] == "calibrated" and gate_hall["confirmed"] >= 2, gate_hall
    assert path.is_file(), "saved after each decision"
    await first.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    restarted = await started(path)
    assert restarted.pairs() == pairs, "the same thresholds, confirmed links and transits"
    assert anna in restarted.gallery.confirmed
    assert split_off in restarted.gallery.cannot_link[bob]
    fresh = await started(None)
    assert fresh.pairs() == [], "without the file the site is learned anew"


async def test_a_restored_calibration_links_what_a_fresh_one_cannot_yet(tmp_path: Path) -> None:
    """The restarted service links a person across the pair before its cameras saw a crowd again."""
    path = tmp_path / "calibration.json"
    site = Site(SIZE, 40, ["gate", "hall"], seed=12)
    first = await started(path)
    await a_day_of_decisions(first, site)
    await first.close()
    ids = {}
    for name, gallery in (("restored", await started(path)), ("fresh", await started(None))):
        gate = await gallery.assign(site.sighting(35, "gate", 1, NOW + 1000))
        await gallery.track_ended("gate", 1)
        hall = await gallery.assign(site.sighting(35, "hall", 1, NOW + 1030))
        ids[name] = (gate.global_id, hall.global_id)
    assert ids["restored"][0] == ids["restored"][1], "the cameras' bias is known: one id"
    assert ids["fresh"][0] != ids["fresh"][1], "raw embeddings of biased cameras: two ids"


async def test_a_store_of_another_model_is_left_out_and_replaced_at_the_next_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calibration.json"
    first = await started(path)
    await a_day_of_decisions(first, Site(SIZE, 40, ["gate", "hall"], seed=13))
    await first.close()
    other = await started(path, model="person_reid_retail", size=SIZE)
    assert other.pairs() == [] and not other.gallery.confirmed
    assert "was learned with ReID model 'person_reid'" in caplog.text
    await other.close()
    assert json.loads(path.read_text())["model"] == "person_reid_retail"


async def test_an_unreadable_store_refuses_the_start_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text('{"format": "streamer identity decisions", "version": 1, "model": ')
    gallery = OperatorGallery(InMemoryGallery(settings()), DecisionStore(path))
    with pytest.raises(CorruptDecisionStore, match=f"{path}: not a readable identity calibration"):
        await gallery.bind(SIZE, MODEL)
    await gallery.close()
    assert path.read_text().endswith('"model": '), "the operator's file is left for them to repair"


async def test_a_decision_that_cannot_be_saved_stands_and_a_later_save_catches_up(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    gallery = await started(path)
    (path / "in the way").mkdir(parents=True)  # a folder where the file goes: saving fails
    site = Site(SIZE, 40, ["gate", "hall"], seed=14)
    await calibrate(gallery, site, CROWDS, NOW)
    first = await gallery.assign(site.sighting(ANNA, "gate", 1, NOW + 100))
    second = await gallery.assign(site.sighting(BOB, "hall", 1, NOW + 100.1))
    merged = await gallery.merge([first.global_id, second.global_id])
    assert not gallery.saved
    assert {(m.camera, m.track_id) for m in merged.members} == {("gate", 1), ("hall", 1)}
    (path / "in the way").rmdir()
    path.rmdir()
    assert await gallery.save() and gallery.saved
    assert merged.global_id in json.loads(path.read_text())["confirmed"]


async def test_merging_an_identity_with_itself_changes_nothing(tmp_path: Path) -> None:
    gallery = await started(tmp_path / "calibration.json")
    site = Site(SIZE, 40, ["gate", "hall"], seed=15)
    anna = await gallery.assign(site.sighting(ANNA, "gate", 1, NOW))
    with pytest.raises(NothingToChange, match="changes nothing"):
        await gallery.merge([anna.global_id, anna.global_id])


async def test_identities_are_listed_newest_first_and_by_camera(tmp_path: Path) -> None:
    gallery = await started(None)
    site = Site(SIZE, 40, ["gate", "hall"], seed=16)
    await calibrate(gallery, site, CROWDS, NOW)
    listed = gallery.identities()
    assert len(listed) == 24
    assert [i.global_id for i in listed] == sorted((i.global_id for i in listed), reverse=True)
    gate = gallery.identities("gate")
    assert len(gate) == 12 and all(m.camera == "gate" for i in gate for m in i.members)
