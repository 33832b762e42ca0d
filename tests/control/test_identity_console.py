"""The operator corrects identities in the console, in a real headless Chromium against a real
service with ReID on the sample clip (real people, real tracks, the real gallery): two identities
merged and a track rejected in the page, and the API then shows both decisions; the camera view
lists the camera's identities; the pages read only what the state schema declares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from streamer.app import Service
from streamer.config import StreamerConfig
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import TOKEN, call, started, until
from tests.metrics.conftest import browser, chromium  # noqa: F401 - fixtures
from tests.metrics.state_reads import RECORD_STATE_READS, undeclared_reads

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CAMERA = "street"
PAGE_TIMEOUT_MS = 30_000
IDENTITIES_TIMEOUT_S = 150.0  # people must walk through, be tracked, embedded and leave


@pytest.fixture(scope="module")
async def service_url(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    folder = tmp_path_factory.mktemp("identity-console")
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "reid": {"enabled": True},
        "identities": {
            "calibration_store": str(folder / "calibration.json"),
            "gallery": {"calibration": {"min_camera_tracks": 3}},
        },
        "publishing": {"jsonl": {"path": str(folder / "out.jsonl")}},
        "metrics": {"sample_interval_s": 0.5, "rate_window_s": 2.0},
        "dashboard": {"port": 0, "token": TOKEN},
        "cameras": [{"name": CAMERA, "url": str(sample_clip), "loop": True, "max_fps": 5}],
    })
    service = Service(config)
    try:
        yield await started(service)
    finally:
        await service.stop()



async def listing(url: str) -> dict[str, Any]:
    answer = await call(url, "GET", "/api/identities?limit=1000")
    assert answer.status == 200, answer.text
    return dict(answer.body)


def holder(found: dict[str, Any], track_id: int) -> dict[str, Any] | None:
    return next((i for i in found["identities"]
                 if any(m["track_id"] == track_id for m in i["members"])), None)


async def two_people_who_left(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two identities of tracks that ended (their ids no longer move), among the newest shown."""

    async def found() -> list[dict[str, Any]] | None:
        shown = (await listing(url))["identities"][:100]
        gone = [i for i in shown if not any(m["active"] for m in i["members"])]
        return gone[:2] if len(gone) >= 2 else None

    first, second = await until(found, "two identities whose tracks ended", IDENTITIES_TIMEOUT_S, 1.0)
    return first, second


async def test_the_operator_merges_two_identities_and_rejects_a_track_in_the_page(
    service_url: str, page: Page
) -> None:
    await page.add_init_script(RECORD_STATE_READS)
    first, second = await two_people_who_left(service_url)
    await page.goto(f"{service_url}/?token={TOKEN}#identities")
    await expect(page.locator("#identities-link")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    for identity in (first, second):
        card = page.locator(f'#identity-list .identity[data-id="{identity["id"]}"]')
        await expect(card).to_contain_text(f"g{identity['id']}", timeout=PAGE_TIMEOUT_MS)
        await card.locator('[data-action="select"]').check()
    await page.locator('#identity-list [data-action="merge"]').click()

    kept = min(first["id"], second["id"])
    tracks = {m["track_id"] for i in (first, second) for m in i["members"]}
    card = page.locator(f'#identity-list .identity[data-id="{kept}"]')
    await expect(card.locator('[data-field="confirmed"]')).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    for track_id in tracks:
        await expect(card.locator(f'li[data-track="{track_id}"]')).to_have_count(1)
    await expect(page.locator(f'#identity-list .identity[data-id="{max(first["id"], second["id"])}"]')
                 ).to_have_count(0)
    merged = await listing(service_url)
    holders = {track: holder(merged, track) for track in tracks}
    assert {h["id"] for h in holders.values() if h} == {kept}, holders
    assert all(h["confirmed"] for h in holders.values() if h)
    await expect(page.locator(f'#identity-pairs tr[data-pair="{CAMERA}|{CAMERA}"]')).to_be_visible()

    # The operator says one track of the merged identity is somebody else.
    rejected = max(first["id"], second["id"])
    track = next(m["track_id"] for i in (first, second) if i["id"] == rejected for m in i["members"])
    await card.locator(f'li[data-track="{track}"] [data-action="reject"]').click()
    await expect(card.locator(f'li[data-track="{track}"]')).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    after = await listing(service_url)
    alone = holder(after, track)
    assert alone is not None and alone["id"] != kept
    assert all(m["track_id"] != track for m in (holder(after, min(tracks - {track})) or {})["members"])
    answer = await call(service_url, "POST", "/api/identities/merge", {"ids": [kept, alone["id"]]})
    assert answer.status == 409 and "kept apart" in answer.body["error"], answer.text

    reads = await page.evaluate("() => window.stateReads()")
    schema = await call(service_url, "GET", "/api/state/schema")
    assert {"identities_enabled", "api.mutations"} <= {".".join(path) for path in reads}
    assert undeclared_reads(reads, schema.body) == []


async def test_the_camera_view_lists_the_identities_seen_on_the_camera(
    service_url: str, page: Page
) -> None:
    await two_people_who_left(service_url)
    await page.goto(f"{service_url}/?token={TOKEN}#camera/{CAMERA}")
    view = page.locator("#camera-view")
    cards = view.locator('[data-field="identities"] .identity')
    await expect(cards.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shown = await cards.evaluate_all("cards => cards.map(card => Number(card.dataset.id))")
    held = {i["id"] for i in (await listing(service_url))["identities"]}
    assert shown and set(shown) <= held
    await expect(cards.first.locator('[data-action="select"]')).to_be_visible()
