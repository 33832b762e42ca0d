"""Helpers for the metrics and dashboard tests: configs on the shared Triton, scraping, a real Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright
from prometheus_client.parser import text_string_to_metric_families

from streamer.config import StreamerConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1600, "height": 1000}


def streamer_config(
    triton_url: str,
    cameras: list[dict[str, Any]],
    jsonl_path: Path,
    *,
    dashboard: dict[str, Any] | None = None,
) -> StreamerConfig:
    """A config on the session's Triton, sampling fast so a short run has figures to show."""
    return StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": triton_url},
            "publishing": {"jsonl": {"path": str(jsonl_path)}},
            "metrics": {
                "sample_interval_s": 0.5,
                "rate_window_s": 2.0,
                "triton_statistics_interval_s": 1.0,
            },
            "dashboard": {"port": 0, **(dashboard or {})},
            "cameras": cameras,
        }
    )


@dataclass
class Scrape:
    """One /metrics answer: samples by name, each a list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def value(self, name: str, **labels: str) -> float | None:
        for sample_labels, value in self.samples.get(name, []):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_labels, value in self.samples.get(name, [])
            if all(sample_labels.get(k) == v for k, v in labels.items())
        )


async def scrape(base_url: str, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(
        f"{base_url}/metrics", headers=headers
    ) as response:
        assert response.status == 200, await response.text()
        return Scrape.parse(await response.text())


async def scrape_until(
    base_url: str, ready: Callable[[Scrape], bool], timeout_s: float, poll_s: float = 0.5
) -> Scrape:
    """Scrape until `ready` holds; fails with the last scrape's figures otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await scrape(base_url)
        if ready(result):
            return result
        if loop.time() > deadline:
            interesting = {k: v for k, v in result.samples.items() if "_bucket" not in k}
            pytest.fail(f"metrics never got there in {timeout_s}s; last scrape: {interesting}")
        await asyncio.sleep(poll_s)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests drive a real browser; install it with "
            "`apt-get update && apt-get install -y chromium chromium-driver`",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, driven by Playwright (no downloaded browsers)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    """A fresh tab of the module's browser, closed after the test."""
    page = await browser.new_page()
    try:
        yield page
    finally:
        await page.close()
