"""The dashboard in a real headless Chromium while the service runs, plus its access token and secrets.

One service for the module: three looping clips and one camera whose URL is dead and carries a
password. The page is opened while the service is still starting, so its FPS figures must move.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from streamer.app import Service
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.server import STATIC_DIR
from tests.metrics.conftest import streamer_config

LIVE_CAMERAS = ("entrance", "lobby", "corridor")
DEAD_CAMERA = "door"
PASSWORD = "s3cret"
DEAD_URL = f"rtsp://user:{PASSWORD}@127.0.0.1:9/x"
TOKEN = "let-me-in-4242-let-me-in-4242"
LIVE_TIMEOUT_MS = 30_000


@dataclass
class LiveService:
    service: Service
    url: str
    started: asyncio.Task[None]

    @property
    def page_url(self) -> str:
        return f"{self.url}/?token={TOKEN}"


@pytest.fixture(scope="module")
async def live(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveService]:
    """The service starting in the background; yielded as soon as its dashboard answers."""
    cameras: list[dict[str, object]] = [
        {"name": name, "url": str(sample_clip), "loop": True, "max_fps": 5} for name in LIVE_CAMERAS
    ]
    cameras.append(
        {"name": DEAD_CAMERA, "url": DEAD_URL, "open_timeout_s": 1,
         "reconnect": {"initial_delay_s": 0.5, "max_delay_s": 1.0}}
    )
    folder = tmp_path_factory.mktemp("dashboard")
    config = streamer_config(
        embedded_triton.grpc_url, cameras, folder / "out.jsonl", dashboard={"token": TOKEN}
    )
    service = Service(config)
    started = asyncio.create_task(service.start())
    while service.metrics.url is None:
        if started.done():
            started.result()  # raises what went wrong
        await asyncio.sleep(0.02)
    try:
        yield LiveService(service, service.metrics.url, started)
    finally:
        with contextlib.suppress(Exception):
            await started
        await service.stop()



async def test_page_shows_one_tile_per_camera_with_fps_changing_over_time(
    live: LiveService, page: Page
) -> None:
    await page.goto(live.page_url)
    await expect(page.locator(".tile")).to_have_count(len(LIVE_CAMERAS) + 1)
    names = await page.locator(".tile").evaluate_all("tiles => tiles.map(t => t.dataset.camera)")
    assert sorted(names) == sorted([*LIVE_CAMERAS, DEAD_CAMERA])

    fps = page.locator(f'.tile[data-camera="{LIVE_CAMERAS[0]}"] [data-field="fps"]')
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVE_TIMEOUT_MS / 1000
    while loop.time() < deadline:
        text = await fps.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        numbers = {float(t) for t in seen if t.replace(".", "", 1).isdigit()}
        if len(numbers) >= 2 and max(numbers) > 0:
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"the FPS figure did not change: {seen}")
    await expect(page.locator("#connection")).to_have_text("live")

    snapshot = page.locator(f'.tile[data-camera="{LIVE_CAMERAS[0]}"] img[data-field="snapshot"]')
    await expect(snapshot).to_have_attribute("src", re.compile(r"^blob:"), timeout=LIVE_TIMEOUT_MS)
    width = await snapshot.evaluate("img => img.naturalWidth")
    assert width > 0, "the annotated snapshot is shown"


async def test_live_pictures_are_fetched_with_the_token_in_a_header_never_in_their_url(
    live: LiveService, page: Page
) -> None:
    """Previously every picture URL carried `?token=` (browser history, proxy logs)."""
    pictures: list[tuple[str, str | None]] = []
    page.on("request", lambda request: pictures.append(
        (request.url, request.headers.get("authorization"))
    ) if "/api/live-view/" in request.url else None)
    await page.goto(live.page_url)
    snapshot = page.locator(f'.tile[data-camera="{LIVE_CAMERAS[0]}"] img[data-field="snapshot"]')
    await expect(snapshot).to_have_attribute("src", re.compile(r"^blob:"), timeout=LIVE_TIMEOUT_MS)
    assert pictures, "the page fetched live pictures"
    assert all("token=" not in url and header == f"Bearer {TOKEN}" for url, header in pictures), pictures


async def test_dead_camera_shows_backoff_while_the_others_keep_working(
    live: LiveService, page: Page
) -> None:
    await live.started
    await page.goto(live.page_url)
    dead = page.locator(f'.tile[data-camera="{DEAD_CAMERA}"]')
    await expect(dead.locator('[data-field="status"]')).to_have_text("backoff", timeout=LIVE_TIMEOUT_MS)
    await expect(dead.locator('[data-field="overlay"]')).to_contain_text("RECONNECTING")
    await expect(dead.locator('[data-field="fps"]')).to_have_text("0.0")
    await expect(dead.locator('[data-field="quality"]')).to_have_text("0%")
    for camera in LIVE_CAMERAS:
        status = page.locator(f'.tile[data-camera="{camera}"] [data-field="status"]')
        await expect(status).to_have_text("streaming", timeout=LIVE_TIMEOUT_MS)
        fps = page.locator(f'.tile[data-camera="{camera}"] [data-field="fps"]')
        await expect(fps).not_to_have_text("0.0", timeout=LIVE_TIMEOUT_MS)
        assert float(await fps.inner_text()) > 0
        quality = page.locator(f'.tile[data-camera="{camera}"] [data-field="quality"]')
        assert float((await quality.inner_text()).rstrip("%")) > 50


@pytest.mark.parametrize(
    ("path", "credentials", "expected_status"),
    [
        ("/", None, 401),
        ("/", "wrong", 403),
        ("/", "header", 200),
        ("/", "query", 200),
        ("/metrics", None, 401),
        ("/metrics", "header", 200),
        ("/api/state", None, 401),
        ("/api/state", "query", 200),
        ("/api/live", None, 401),
        (f"/api/live-view/{LIVE_CAMERAS[0]}", None, 401),
        (f"/api/live-view/{LIVE_CAMERAS[0]}", "wrong", 403),
        ("/api/state/schema", None, 401),
        ("/static/dashboard.js", None, 200),  # page code holds no data
        ("/static/store.js", None, 200),  # the page's modules too
        ("/static/index.html", None, 404),  # the page itself is data behind the token
    ],
)
async def test_a_token_protected_dashboard_refuses_requests_without_the_token(
    live: LiveService, path: str, credentials: str | None, expected_status: int
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if credentials == "header" else {}
    if credentials == "wrong":
        headers = {"Authorization": "Bearer not-the-token"}
    params = {"token": TOKEN} if credentials == "query" else {}
    async with aiohttp.ClientSession() as session, session.get(
        f"{live.url}{path}", headers=headers, params=params
    ) as response:
        assert response.status == expected_status


async def test_no_page_or_endpoint_reveals_the_camera_password(live: LiveService, page: Page) -> None:
    await live.started
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bodies: dict[str, bytes] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async def fetch_until(path: str, contains: bytes) -> bytes:
            for _ in range(60):  # the dead camera's error detail appears after its first attempt
                async with session.get(f"{live.url}{path}") as response:
                    body = await response.read()
                if contains in body:
                    return body
                await asyncio.sleep(0.5)
            pytest.fail(f"{path} never mentioned {contains!r}: {body[:2000]!r}")

        bodies["state"] = await fetch_until("/api/state", b"Connection refused")
        bodies["metrics"] = await fetch_until("/metrics", b'camera="door"')
        for path in ("/", *(f"/static/{module.name}" for module in STATIC_DIR.glob("*.js")),
                     "/static/dashboard.css",
                     *(f"/api/live-view/{c}" for c in (*LIVE_CAMERAS, DEAD_CAMERA))):
            async with session.get(f"{live.url}{path}") as response:
                bodies[path] = await response.read()
        async with session.get(f"{live.url}/api/live") as response:
            bodies["events"] = await response.content.readuntil(b"\n\n")
    await page.goto(live.page_url)
    await expect(page.locator(f'.tile[data-camera="{DEAD_CAMERA}"] [data-field="status"]')).to_have_text(
        "backoff", timeout=LIVE_TIMEOUT_MS
    )
    bodies["rendered page"] = (await page.content()).encode()
    _code, stats_output, _errors = await run_stats(live.url, "--token", TOKEN)
    bodies["streamer stats"] = stats_output.encode()

    redacted = b"rtsp://***@127.0.0.1:9/x"
    assert redacted in bodies["state"] and redacted in bodies["metrics"], "the source is shown, redacted"
    assert redacted in bodies["rendered page"]
    leaks = [name for name, body in bodies.items() if PASSWORD.encode() in body]
    assert leaks == []


async def test_streamer_stats_prints_the_camera_table_and_needs_the_token(live: LiveService) -> None:
    await live.started
    code, out, _ = await run_stats(live.url, "--token", TOKEN)
    assert code == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for camera in LIVE_CAMERAS:
        assert camera in rows
    assert rows[DEAD_CAMERA][1] in ("backoff", "connecting")
    assert "person_detector" in rows and "jsonl" in rows
    code, _, err = await run_stats(live.url)
    assert code == 1 and "401" in err


async def run_stats(url: str, *args: str) -> tuple[int, str, str]:
    """`streamer stats --once` in a subprocess, awaited: the service runs in this very loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer.cli", "stats", "--once", "--url", url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()
