"""The dashboard as a console, in a real headless Chromium against the real service: the camera
view, adding (with a refused URL first), disabling and removing a camera through the page, the
events list with its pictures and filters, the page on a phone-sized screen, and every state field
the pages read declared by the published schema.

One service for the module: the sample clip looping, with a zone and a line on the road, event
pictures enabled, and the dashboard token (so the page offers its controls).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from streamer.app import Service
from streamer.config import StreamerConfig
from streamer.inference.server import EmbeddedTritonServer
from tests.control.support import TOKEN, call, started
from tests.metrics.conftest import browser, chromium  # noqa: F401 - fixtures
from tests.metrics.state_reads import RECORD_STATE_READS, undeclared_reads

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LIVE_TIMEOUT_MS = 60_000
EVENTS_TIMEOUT_MS = 120_000  # zone events need people walking into the zone on the clip
CAMERA = "street"
ADDED = "door"
# 768x576 clip: the road runs left-right through y 180-330 (tests/publishing/test_pipeline_zones.py)
ROAD = {"name": "road", "points": [[250, 180], [700, 180], [700, 330], [250, 330]]}
LINE = {"name": "crossing", "points": [[470, 340], [470, 170]],
        "directions": ["eastbound", "westbound"]}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
async def service_url(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    folder = tmp_path_factory.mktemp("console")
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "publishing": {"jsonl": {"path": str(folder / "out.jsonl")}},
        "metrics": {"sample_interval_s": 0.5, "rate_window_s": 2.0},
        "dashboard": {"port": 0, "token": TOKEN, "api": {"file_folders": [str(sample_clip.parent)]}},
        "snapshots": {"enabled": True, "directory": str(folder / "snapshots"), "min_free_mb": 0},
        "cameras": [{"name": CAMERA, "url": str(sample_clip), "loop": True, "max_fps": 5,
                     "zones": [ROAD], "lines": [LINE]}],
    })
    service = Service(config)  # no file: changes last until the service stops
    try:
        yield await started(service)
    finally:
        await service.stop()



async def overflow_px(page: Page) -> int:
    """How far the page is wider than the screen (0: no sideways scrolling)."""
    return int(await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    ))


async def wider_than_screen(page: Page) -> list[str]:
    """The elements that stick out on the right (named for the failure message)."""
    return list(await page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)"
        ".slice(0, 8).map(e => `${e.tagName}.${e.className}#${e.id}`)"
    ))


async def test_a_tile_opens_the_camera_view_with_picture_state_and_counts(
    service_url: str, page: Page
) -> None:
    await page.goto(f"{service_url}/?token={TOKEN}")
    await page.locator(f'.tile[data-camera="{CAMERA}"]').click()
    view = page.locator("#camera-view")
    await expect(view).to_be_visible()
    await expect(view.locator('[data-field="name"]')).to_have_text(CAMERA)
    picture = view.locator('img[data-field="snapshot"]')
    await expect(picture).to_have_attribute("src", re.compile(r"^blob:"), timeout=LIVE_TIMEOUT_MS)
    assert await picture.evaluate("img => img.naturalWidth") > 0, "the annotated picture is shown"
    await expect(view.locator('[data-field="status"]')).to_have_text("streaming", timeout=LIVE_TIMEOUT_MS)
    await expect(view.locator('.history li[data-status="streaming"]')).not_to_have_count(0)
    await expect(view.locator('.chip[data-zone="road"]')).to_contain_text("inside")
    await expect(view.locator('.chip[data-line="crossing"]')).to_contain_text("eastbound")
    await expect(view.locator('[data-field="controls"]')).to_be_visible()
    await expect(page.locator("#overview")).to_be_hidden()
    await view.locator('[data-action="back"]').click()
    await expect(page.locator(f'.tile[data-camera="{CAMERA}"] .chip[data-zone="road"]')).to_be_visible()


async def test_add_camera_shows_a_refused_url_in_place_then_adds_disables_and_removes_it(
    service_url: str, page: Page, sample_clip: Path
) -> None:
    await page.goto(f"{service_url}/?token={TOKEN}")
    await page.locator("#add-camera-open").click()
    form = page.locator("#add-camera-form")
    await form.locator('[name="name"]').fill(ADDED)
    await form.locator('[name="url"]').fill("ftp://192.0.2.1/stream")
    await form.locator('[type="submit"]').click()
    error = form.locator('[data-field="error"]')
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("url")
    await expect(error).to_contain_text("ftp")
    await expect(page.locator(f'.tile[data-camera="{ADDED}"]')).to_have_count(0)

    await form.locator('[name="url"]').fill(str(sample_clip))
    await form.locator('[name="max_fps"]').fill("2")
    await form.locator('[name="loop"]').check()
    await form.locator('[type="submit"]').click()
    await expect(page.locator("#add-camera")).to_be_hidden()
    tile = page.locator(f'.tile[data-camera="{ADDED}"]')
    await expect(tile).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    await expect(tile.locator('[data-field="fps"]')).to_have_text(
        re.compile(r"^(?!0\.0$)\d+\.\d$"), timeout=LIVE_TIMEOUT_MS
    )

    await tile.click()
    view = page.locator("#camera-view")
    await view.locator('[data-action="edit"]').click()
    edit = view.locator('[data-field="edit-form"]')
    await expect(edit.locator('[name="max_fps"]')).to_have_value("2")
    await edit.locator('[name="max_fps"]').fill("3")
    await edit.locator('[type="submit"]').click()
    await expect(edit).to_be_hidden()
    changed = await call(service_url, "GET", f"/api/cameras/{ADDED}")
    assert changed.body["config"]["max_fps"] == 3
    assert changed.body["config"]["url"] == str(sample_clip), "an untouched URL is not sent"

    await view.locator('[data-action="toggle"]').click()
    await expect(view.locator('[data-field="status"]')).to_have_text("disabled", timeout=LIVE_TIMEOUT_MS)
    await expect(view.locator('[data-action="toggle"]')).to_have_text("Enable")

    page.once("dialog", lambda dialog: dialog.accept())
    await view.locator('[data-action="remove"]').click()
    await expect(page.locator("#overview")).to_be_visible()
    await expect(tile).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator(f'.tile[data-camera="{CAMERA}"]')).to_have_count(1)


async def test_events_list_shows_pictures_and_filters_by_zone(service_url: str, page: Page) -> None:
    await page.goto(f"{service_url}/?token={TOKEN}#events")
    events = page.locator("#events-list .event")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#events-list .event img[src]')]"
        ".some(img => img.complete && img.naturalWidth > 0)",
        timeout=EVENTS_TIMEOUT_MS,
    )

    await page.locator('#event-filters [name="zone"]').select_option("road")
    await expect(page.locator('#events-list .event[data-zone="road"]').first).to_be_visible(
        timeout=EVENTS_TIMEOUT_MS
    )
    await expect(page.locator("#events-list .event:not([data-zone='road'])")).to_have_count(
        0, timeout=LIVE_TIMEOUT_MS
    )
    assert await events.count() > 0
    shown = await page.locator('#events-list .event [data-field="what"]').all_inner_texts()
    answer = await call(service_url, "GET", "/api/events?zone=road&limit=1000")
    summaries = {event["summary"] for event in answer.body["events"]}
    assert shown and set(shown) <= summaries, "each event says what the server's summary says"


async def test_a_zone_drawn_on_the_picture_is_saved_and_counted(service_url: str, page: Page) -> None:
    await page.goto(f"{service_url}/?token={TOKEN}#camera/{CAMERA}")
    view = page.locator("#camera-view")
    picture = view.locator('img[data-field="snapshot"]')
    await expect(picture).to_have_attribute("src", re.compile(r"^blob:"), timeout=LIVE_TIMEOUT_MS)
    await view.locator('[data-action="geometry"]').click()
    editor = view.locator('[data-field="geometry-editor"]')
    await expect(editor.locator('.shapes li[data-name="road"]')).to_have_count(1)
    await editor.locator('[name="shape-name"]').fill("kerb")
    await editor.locator('[data-action="finish-shape"]').click()  # no corners yet: refused in place
    await expect(editor.locator('[data-field="geometry-error"]')).to_contain_text("3 corners")
    box = await view.locator('[data-field="draw"]').bounding_box()
    assert box is not None
    for fx, fy in ((0.05, 0.75), (0.3, 0.75), (0.3, 0.95), (0.05, 0.95)):
        await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    await editor.locator('[data-action="finish-shape"]').click()
    await expect(editor.locator('.shapes li[data-name="kerb"]')).to_have_count(1)
    await editor.locator('[data-action="save-geometry"]').click()
    await expect(editor).to_be_hidden()
    await expect(view.locator('.chip[data-zone="kerb"]')).to_contain_text("inside", timeout=LIVE_TIMEOUT_MS)
    await expect(view.locator('.chip[data-zone="road"]')).to_have_count(1)

    saved = await call(service_url, "GET", f"/api/cameras/{CAMERA}")
    kerb = next(zone for zone in saved.body["config"]["zones"] if zone["name"] == "kerb")
    assert kerb["units"] == "fraction"
    xs = sorted(point[0] for point in kerb["points"])
    assert 0.0 < xs[0] < 0.1 and 0.25 < xs[-1] < 0.35, kerb["points"]


async def test_the_page_fits_a_phone_screen(service_url: str, browser: BrowserContext) -> None:  # noqa: F811
    page = await browser.new_page()
    try:
        await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        await page.goto(f"{service_url}/?token={TOKEN}")
        tile = page.locator(f'.tile[data-camera="{CAMERA}"]')
        await expect(tile).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        box = await tile.bounding_box()
        assert box is not None and box["width"] <= PHONE["width"]
        assert await overflow_px(page) <= 0, f"sideways scrolling: {await wider_than_screen(page)}"
        await tile.click()
        await expect(page.locator("#camera-view")).to_be_visible()
        assert await overflow_px(page) <= 0, f"sideways scrolling: {await wider_than_screen(page)}"
    finally:
        await page.close()


async def test_the_pages_read_only_what_the_state_schema_declares(service_url: str, page: Page) -> None:
    await page.add_init_script(RECORD_STATE_READS)
    await page.goto(f"{service_url}/?token={TOKEN}")
    tile = page.locator(f'.tile[data-camera="{CAMERA}"]')
    await expect(tile.locator('.chip[data-line="crossing"]')).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator('#models tr[data-model]')).not_to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    await tile.click()
    view = page.locator("#camera-view")
    await expect(view.locator('.history li[data-status]')).not_to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    await expect(view.locator('[data-field="controls"]')).to_be_visible()
    await page.goto(f"{service_url}/?token={TOKEN}#events")
    await expect(page.locator('#event-filters [name="zone"] option[value="road"]')).to_have_count(
        1, timeout=LIVE_TIMEOUT_MS
    )
    reads = await page.evaluate("() => window.stateReads()")
    schema = await call(service_url, "GET", "/api/state/schema")

    assert schema.status == 200
    joined = {".".join(path) for path in reads}
    assert {  # the recorder saw the pages at work: tiles, models, the camera view, the filters
        "cameras.[].processed_fps", "cameras.[].history.fps", "models.[].batch_executions",
        "cameras.[].state_history.[].status", "api.mutations", "events_enabled",
        "cameras.[].analytics.lines.crossing",
    } <= joined, sorted(joined)
    assert undeclared_reads(reads, schema.body) == []
