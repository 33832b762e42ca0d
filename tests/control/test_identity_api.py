"""The identities API on a real service (real Triton serving the ReID model, the real gallery the
identities stage uses), as an operator corrects it: each decision is kept and changes what the
gallery decides later, survives a restart, and a refused request changes nothing.

The service's camera is switched off, so nothing but this test feeds the gallery: people are
synthetic embeddings of the model's size on two biased cameras (`tests/identities/site.py`),
sighted through the service's own gallery.
"""

from __future__ import annotations

import asyncio
import stat
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamer.app import Service
from streamer.config import StreamerConfig
from streamer.identities.decisions import OperatorGallery
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import AUTH, TOKEN, Answer, call, started
from tests.identities.site import Site, calibrate

CROWDS = {"gate": range(0, 12), "hall": range(12, 24)}
TRANSIT_S = 25.0


@dataclass
class Running:
    service: Service
    url: str
    gallery: OperatorGallery
    site: Site
    store: Path


def service_config(triton_url: str, folder: Path) -> StreamerConfig:
    return StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": triton_url},
        "reid": {"enabled": True},
        "identities": {
            "calibration_store": str(folder / "identities" / "calibration.json"),
            "gallery": {"calibration": {"min_camera_tracks": 5, "min_negatives": 10}},
        },
        "publishing": {"jsonl": {"path": str(folder / "out.jsonl")}},
        "dashboard": {"port": 0, "token": TOKEN},
        "cameras": [{"name": "gate", "url": "gate.mp4", "enabled": False}],
    })


async def start_service(config: StreamerConfig, seed: int) -> Running:
    service = Service(config)
    url = await started(service)
    gallery = service.shared.gallery
    assert gallery is not None and gallery.gallery.embedding_size is not None
    site = Site(gallery.gallery.embedding_size, 60, ["gate", "hall"], seed=seed)
    store = config.identities.calibration_store
    assert store is not None
    return Running(service, url, gallery, site, store)


@pytest.fixture(scope="module")
async def running(
    embedded_triton: EmbeddedTritonServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    config = service_config(embedded_triton.grpc_url, tmp_path_factory.mktemp("identities"))
    running = await start_service(config, seed=21)
    await calibrate(running.gallery, running.site, CROWDS, time.time() - 300)
    try:
        yield running
    finally:
        await running.service.stop()


class Walk:
    """People walking between the two cameras of the running service, sighted now."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.start = time.time()

    async def seen(self, person: int, camera: str, track_id: int, after_s: float = 0.0) -> int:
        sighting = self.running.site.sighting(person, camera, track_id, self.start + after_s)
        return (await self.running.gallery.assign(sighting)).global_id

    async def gone(self, camera: str, track_id: int) -> None:
        await self.running.gallery.track_ended(camera, track_id)


async def identities(running: Running, query: str = "") -> dict[str, Any]:
    answer = await call(running.url, "GET", f"/api/identities{query}")
    assert answer.status == 200, answer.text
    return dict(answer.body)


def holder(listing: dict[str, Any], camera: str, track_id: int) -> dict[str, Any]:
    """The identity holding the track."""
    return next(
        identity for identity in listing["identities"]
        if any((m["camera"], m["track_id"]) == (camera, track_id) for m in identity["members"])
    )


def pair(listing: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    return next(row for row in listing["pairs"] if row["cameras"] == sorted([a, b]))


def refused(answer: Answer, status: int, *words: str) -> None:
    assert answer.status == status, (status, answer.status, answer.text)
    assert answer.body is not None and "\n" not in answer.body["error"], answer.text
    for word in words:
        assert word in answer.body["error"], (word, answer.body["error"])


async def test_confirm_then_reject_a_track_that_never_rejoins(running: Running) -> None:
    walk = Walk(running)
    anna = await walk.seen(40, "gate", 1)
    await walk.gone("gate", 1)
    assert await walk.seen(40, "hall", 1, TRANSIT_S) == anna, "one person, one id on both cameras"
    before = await identities(running)
    assert {m["camera"] for m in holder(before, "hall", 1)["members"]} == {"gate", "hall"}

    confirmed = await call(running.url, "POST", f"/api/identities/{anna}/confirm", {})
    assert confirmed.status == 200, confirmed.text
    assert confirmed.body["identity"]["confirmed"] and confirmed.body["saved"]
    after = await identities(running)
    assert pair(after, "gate", "hall")["confirmed"] > pair(before, "gate", "hall")["confirmed"]
    assert holder(after, "gate", 1)["confirmed"]

    rejected = await call(running.url, "POST", f"/api/identities/{anna}/reject",
                          {"camera": "hall", "track_id": 1})
    assert rejected.status == 200, rejected.text
    other = rejected.body["rejected"]["id"]
    assert other != anna
    assert [(m["camera"], m["track_id"]) for m in rejected.body["rejected"]["members"]] == [("hall", 1)]
    # The hall track is sighted again, as alike as before: it stays out.
    assert await walk.seen(40, "hall", 1, TRANSIT_S + 5) == other
    listing = await identities(running)
    assert holder(listing, "hall", 1)["id"] == other
    assert [(m["camera"], m["track_id"]) for m in holder(listing, "gate", 1)["members"]] == [("gate", 1)]
    kept_apart = await call(running.url, "POST", "/api/identities/merge", {"ids": [anna, other]})
    refused(kept_apart, 409, "kept apart")


async def test_merge_makes_one_identity_that_a_later_track_joins(running: Running) -> None:
    walk = Walk(running)
    bob = await walk.seen(41, "gate", 2)
    carl = await walk.seen(42, "hall", 2, 0.2)  # at the same moment: the gallery takes two people
    assert bob != carl
    before = await identities(running)
    merged = await call(running.url, "POST", "/api/identities/merge", {"ids": [carl, bob]})
    assert merged.status == 200, merged.text
    kept = merged.body["identity"]
    assert kept["id"] == min(bob, carl) and kept["confirmed"]
    assert kept["cameras"] == ["gate", "hall"]
    listing = await identities(running)
    assert holder(listing, "gate", 2)["id"] == holder(listing, "hall", 2)["id"] == kept["id"]
    assert max(bob, carl) not in {identity["id"] for identity in listing["identities"]}
    assert pair(listing, "gate", "hall")["confirmed"] > pair(before, "gate", "hall")["confirmed"]
    # Later, Carl comes back to the hall on a new track: he joins the merged identity.
    await walk.gone("gate", 2)
    await walk.gone("hall", 2)
    assert await walk.seen(42, "hall", 3, 60) == kept["id"]


async def test_split_tracks_stay_apart(running: Running) -> None:
    walk = Walk(running)
    dave = await walk.seen(43, "gate", 4)
    await walk.gone("gate", 4)
    assert await walk.seen(43, "hall", 4, TRANSIT_S) == dave
    split = await call(running.url, "POST", "/api/identities/split",
                       {"id": dave, "tracks": [{"camera": "hall", "track_id": 4}]})
    assert split.status == 200, split.text
    new = split.body["split"]["id"]
    assert split.body["identity"]["id"] == dave and new != dave
    assert await walk.seen(43, "hall", 4, TRANSIT_S + 5) == new, "the split track does not rejoin"
    refused(await call(running.url, "POST", "/api/identities/merge", {"ids": [dave, new]}),
            409, "kept apart")
    listing = await identities(running, "?camera=hall&limit=1000")
    assert holder(listing, "hall", 4)["id"] == new
    assert all("hall" in identity["cameras"] for identity in listing["identities"])


async def test_refused_requests_answer_one_line_and_change_nothing(running: Running) -> None:
    walk = Walk(running)
    erin = await walk.seen(44, "gate", 5)
    before = await identities(running, "?limit=1000")
    url = running.url
    form = {"Content-Type": "application/x-www-form-urlencoded", **AUTH}
    for answer, status, words in [
        (await call(url, "POST", f"/api/identities/{erin}/confirm", {}, headers={}), 401, ()),
        (await call(url, "POST", f"/api/identities/{erin}/confirm", data="x=1", headers=form), 415,
         ("application/json",)),
        (await call(url, "POST", "/api/identities/merge", data="{", headers={
            "Content-Type": "application/json", **AUTH}), 400, ("JSON",)),
        (await call(url, "POST", f"/api/identities/{erin}/reject", {"camera": "gate"}), 422,
         ("body.track_id",)),
        (await call(url, "POST", f"/api/identities/{erin}/reject", {"camera": "gate", "track_id": "5"}),
         422, ("body.track_id",)),
        (await call(url, "POST", "/api/identities/merge", {"ids": [erin, 1], "why": "same"}), 422,
         ("body.why",)),
        (await call(url, "POST", "/api/identities/merge", {"ids": [erin]}), 422, ("body.ids",)),
        (await call(url, "POST", "/api/identities/split", {"id": erin, "tracks": []}), 422,
         ("body.tracks",)),
        (await call(url, "POST", f"/api/identities/{erin}/confirm", {"really": True}), 422, ("body",)),
        (await call(url, "POST", "/api/identities/12345/confirm", {}), 404, ("no identity 12345",)),
        (await call(url, "POST", "/api/identities/abc/confirm", {}), 404, ("'abc'",)),
        (await call(url, "POST", "/api/identities/merge", {"ids": [erin, 12345]}), 404, ("12345",)),
        (await call(url, "POST", f"/api/identities/{erin}/reject", {"camera": "hall", "track_id": 5}),
         404, ("hall#5",)),
        (await call(url, "POST", f"/api/identities/{erin}/reject", {"camera": "gate", "track_id": 5}),
         409, ("changes nothing",)),
        (await call(url, "POST", "/api/identities/merge", {"ids": [erin, erin]}), 409,
         ("changes nothing",)),
        (await call(url, "GET", "/api/identities?limit=0"), 422, ("limit",)),
    ]:
        if status == 401:
            assert answer.status == 401, answer.text
            continue
        refused(answer, status, *words)
    assert await identities(running, "?limit=1000") == before


async def test_the_state_offers_the_identities_page(running: Running) -> None:
    state = await call(running.url, "GET", "/api/state")
    assert state.body["identities_enabled"] is True
    document = await call(running.url, "GET", "/api/openapi.json")
    assert {"/api/identities", "/api/identities/merge", "/api/identities/split",
            "/api/identities/{id}/confirm", "/api/identities/{id}/reject"} <= set(document.body["paths"])


async def test_the_openapi_document_drives_the_identity_routes_without_server_errors(
    running: Running,
) -> None:
    """Fuzz the identities operations from /api/openapi.json: no 5xx, a refusal changes nothing."""
    failures = await asyncio.to_thread(fuzz, running.url)
    assert not failures, "\n".join(failures)


def fuzz(url: str) -> list[str]:
    import hypothesis
    import requests
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json", headers=AUTH)
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    def snapshot() -> Any:
        return requests.get(f"{url}/api/identities?limit=1000", headers=AUTH, timeout=10).json()

    def exercise_operation(operation: Any) -> None:
        @hypothesis.settings(
            max_examples=15, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            before = snapshot()
            response = case.call(base_url=url, headers=AUTH, timeout=30)
            where = f"{operation.method.upper()} {case.formatted_path}"
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and snapshot() != before:
                failures.append(f"{where}: refused with {response.status_code} but changed state")

        exercise()

    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/api/identities"):
            exercise_operation(operation)
    if not statuses[404] or not statuses[422]:
        failures.append(f"the fuzzing never reached the gallery: {statuses}")
    return failures


async def test_decisions_survive_a_restart(
    embedded_triton: EmbeddedTritonServer, tmp_path: Path
) -> None:
    config = service_config(embedded_triton.grpc_url, tmp_path)
    first = await start_service(config, seed=22)
    try:
        await calibrate(first.gallery, first.site, CROWDS, time.time() - 300)
        walk = Walk(first)
        anna = await walk.seen(40, "gate", 1)
        await walk.gone("gate", 1)
        assert await walk.seen(40, "hall", 1, TRANSIT_S) == anna
        answer = await call(first.url, "POST", f"/api/identities/{anna}/confirm", {})
        assert answer.status == 200 and answer.body["saved"], answer.text
        bob = await walk.seen(41, "gate", 2, 60)
        carl = await walk.seen(42, "hall", 2, 60.2)
        answer = await call(first.url, "POST", "/api/identities/merge", {"ids": [bob, carl]})
        assert answer.status == 200, answer.text
        taught = await identities(first)
    finally:
        await first.service.stop()
    assert stat.S_IMODE(first.store.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.store.parent.stat().st_mode) == 0o700

    second = await start_service(config, seed=22)
    try:
        restored = await identities(second)
        assert restored["pairs"] == taught["pairs"], "calibration and confirmed links as they were"
        assert pair(restored, "gate", "hall")["confirmed"] >= 2
        assert restored["identities"] == [], "the tracks themselves ended with the old process"
        # What was learned decides at once: the cameras' bias is known without a new crowd.
        walk = Walk(second)
        frank = await walk.seen(45, "gate", 1)
        await walk.gone("gate", 1)
        assert await walk.seen(45, "hall", 1, TRANSIT_S) == frank
    finally:
        await second.service.stop()
