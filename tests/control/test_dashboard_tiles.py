"""The dashboard follows cameras changed at runtime, in a real headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from streamer.app import Service
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import TOKEN, call, started
from tests.metrics.conftest import browser, chromium, streamer_config  # noqa: F401 - fixtures

LIVE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
async def service_url(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    folder = tmp_path_factory.mktemp("tiles")
    cameras: list[dict[str, object]] = [
        {"name": "lobby", "url": str(sample_clip), "loop": True, "max_fps": 2}
    ]
    config = streamer_config(
        embedded_triton.grpc_url, cameras, folder / "out.jsonl",
        dashboard={"token": TOKEN, "api": {"file_folders": [str(sample_clip.parent)]}},
    )
    service = Service(config)  # no file: changes last until the service stops
    try:
        yield await started(service)
    finally:
        await service.stop()


async def test_added_camera_gets_a_tile_and_a_removed_one_loses_it(
    service_url: str, browser: BrowserContext, sample_clip: Path  # noqa: F811
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(f"{service_url}/?token={TOKEN}")
        await expect(page.locator(".tile")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        added = await call(service_url, "POST", "/api/cameras",
                           {"name": "door", "url": str(sample_clip), "loop": True, "max_fps": 2})
        assert added.status == 201, added.text
        door = page.locator('.tile[data-camera="door"]')
        await expect(door).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        await expect(door.locator('[data-field="fps"]')).not_to_have_text("0.0", timeout=LIVE_TIMEOUT_MS)
        removed = await call(service_url, "DELETE", "/api/cameras/door")
        assert removed.status == 204, removed.text
        await expect(door).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
        await expect(page.locator('.tile[data-camera="lobby"]')).to_have_count(1)
    finally:
        await page.close()


async def test_camera_view_says_event_history_needs_snapshots(
    service_url: str, browser: BrowserContext  # noqa: F811
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(f"{service_url}/?token={TOKEN}")
        await page.locator('.tile[data-camera="lobby"]').click()
        view = page.locator("#camera-view")
        await expect(view.locator('[data-field="events"]')).to_contain_text(
            "snapshots.enabled", timeout=LIVE_TIMEOUT_MS
        )
        await expect(page.locator("#events-link")).to_be_hidden()
    finally:
        await page.close()
