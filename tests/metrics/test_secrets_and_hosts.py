"""The HTTP surfaces never show a camera credential, and answer only the Host names they should.

The stats registry is filled by hand with every credential form (tests/support/credentials.py),
each camera's error detail holding its raw URL and its secrets in every spelling, as a PyAV error
that slipped past the watchdog would: the real metrics service must hide them all on /metrics,
/api/state, the live-update stream, the probes and the page a browser renders.

The Host check (DNS rebinding: a page that re-points its own name at 127.0.0.1): a forged name gets
421 on everything but the probes; localhost, IP addresses, the listen address and the configured
names get an answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
from playwright.async_api import BrowserContext, expect

from streamer.config import StreamerConfig
from streamer.core.redaction import redact_url
from streamer.core.stats import CameraState, CameraStats, ModelStats, ServerStats, StatsKind, StatsRegistry
from streamer.metrics.service import MetricsService
from tests.support.credentials import FORMS, leaks

pytestmark = pytest.mark.timeout(60)

TOKEN = "t0ken-for-the-page-and-the-api"
SERVER = "triton.internal:8001"
FORGED = "rebind.attacker.example"
DATA_PATHS = ("/", "/api/state", "/metrics", "/api/live", "/static/dashboard.js", "/api/live-view/x")


def config(**dashboard: Any) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": SERVER},
            "metrics": {"sample_interval_s": 0.1, "ready_min_streaming_ratio": 1.0},
            "dashboard": {"port": 0, **dashboard},
            "cameras": [{"name": form.camera, "url": form.url} for form in FORMS],
        }
    )


def raw_detail(url: str, secrets: tuple[str, ...]) -> str:
    """An error message as PyAV writes it, plus every secret raw, decoded and encoded."""
    spelled = [form for secret in secrets for form in (secret, unquote(secret), quote(secret, safe=""))]
    return f"ConnectionRefusedError: Connection refused: '{url}' ({unquote(url)}) {' '.join(spelled)}"


def failing_registry() -> StatsRegistry:
    """Every form's camera in backoff with a detail that still holds its credentials."""
    stats = StatsRegistry()
    stats.register(StatsKind.SERVER, "triton", ServerStats(
        url=SERVER, mode="external", up=False,
        last_error=f"unreachable; cameras {' '.join(raw_detail(f.url, f.whole) for f in FORMS)}",
    ))
    stats.register(StatsKind.MODEL, "person_detector", ModelStats("person_detector", requests_in_flight=1))
    for form in FORMS:
        detail = raw_detail(form.url, form.whole)
        stats.register(StatsKind.CAMERA, form.camera, CameraStats(
            form.camera, redact_url(form.url), state=CameraState.BACKOFF,
            source_state=CameraState.BACKOFF, detail=detail, last_error=detail,
        ))
    return stats


@asynccontextmanager
async def serving(settings: StreamerConfig, stats: StatsRegistry | None = None) -> AsyncIterator[str]:
    service = MetricsService(settings, stats or StatsRegistry())
    await service.start()
    try:
        assert service.url is not None
        yield service.url
    finally:
        await service.stop()


async def get(url: str, host: str | None = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        if response.content_type == "text/event-stream":
            return response.status, (await response.content.readuntil(b"\n\n")).decode()
        return response.status, await response.text()


def refused_details(state_body: str) -> int:
    """Cameras whose current detail (not their state history) reports the refused connection."""
    try:
        cameras = json.loads(state_body)["cameras"]
    except (ValueError, KeyError):
        return 0
    return sum("Connection refused" in (camera["detail"] or "") for camera in cameras)


async def test_no_http_surface_shows_any_credential_form(browser: BrowserContext) -> None:
    async with serving(config(token=TOKEN), failing_registry()) as url:
        bodies: dict[str, str] = {}
        for _ in range(50):  # the first sample brings the details
            _status, bodies["/api/state"] = await get(f"{url}/api/state", token=TOKEN)
            if refused_details(bodies["/api/state"]) == len(FORMS):
                break
            await asyncio.sleep(0.1)
        for path in ("/metrics", "/api/live", "/readyz", "/healthz"):
            _status, bodies[path] = await get(f"{url}{path}", token=TOKEN)
        page = await browser.new_page()
        try:
            await page.goto(f"{url}/?token={TOKEN}")
            tile = page.locator(f'.tile[data-camera="{FORMS[0].camera}"] [data-field="status"]')
            await expect(tile).to_have_text("backoff", timeout=10_000)
            bodies["rendered page"] = await page.content()
        finally:
            await page.close()

    assert refused_details(bodies["/api/state"]) == len(FORMS), bodies["/api/state"]
    for form in FORMS:
        shown = redact_url(form.url)
        assert f'"source": "{shown}"' in bodies["/api/state"].replace('":"', '": "')
        assert f'camera="{form.camera}",source="{shown}"' in bodies["/metrics"], form.id
    assert redact_url(FORMS[0].url) in bodies["rendered page"]
    found = {name: leaks(body, FORMS) for name, body in bodies.items()}
    assert found == {name: [] for name in bodies}


@pytest.mark.parametrize("path", DATA_PATHS)
async def test_a_forged_host_gets_421_while_localhost_and_ip_addresses_are_answered(path: str) -> None:
    """Loopback, no token (the default): only names that cannot be re-pointed at this address."""
    async with serving(config()) as url:
        port = url.rsplit(":", 1)[1]
        forged = [
            await get(f"{url}{path}", host=host) for host in (f"{FORGED}:{port}", f"localhost.{FORGED}")
        ]
        answered = [
            await get(f"{url}{path}", host=host)
            for host in (f"localhost:{port}", "LOCALHOST.", f"127.0.0.1:{port}", f"[::1]:{port}",
                         "192.0.2.7:8080", "[2001:db8::1]", None)
        ]
    assert [status for status, _body in forged] == [421, 421]
    assert forged[0][1] == (
        "421: this server does not answer to that Host name; add it to dashboard.allowed_hosts\n"
    )
    assert FORGED not in forged[0][1]
    assert 421 not in [status for status, _body in answered]  # 404 for the unknown snapshot


async def test_the_probes_answer_any_host() -> None:
    """Kubernetes probes send Host = pod IP:port; a load balancer may send any name."""
    async with serving(config(allowed_hosts=["streamer.example.com"])) as url:
        health = await get(f"{url}/healthz", host=FORGED)
        ready = await get(f"{url}/readyz", host=FORGED)
        near_miss = await get(f"{url}/readyz/", host=FORGED)
    assert health[0] == 200 and ready[0] == 503
    assert near_miss[0] == 421, "only the exact probe paths are exempt"


@pytest.mark.parametrize(
    ("dashboard", "host", "token", "expected"),
    [
        ({"allowed_hosts": ["streamer.example.com"]}, "Streamer.Example.com.:8080", None, 200),
        ({"allowed_hosts": ["streamer.example.com"]}, FORGED, None, 421),
        ({"host": "localhost"}, "localhost:1", None, 200),
        ({"allowed_hosts": ["*"]}, FORGED, None, 200),
        ({"token": TOKEN}, FORGED, TOKEN, 200),
        ({"token": TOKEN}, FORGED, None, 401),
        ({"token": TOKEN, "allowed_hosts": ["streamer.example.com"]}, FORGED, TOKEN, 421),
        ({"token": TOKEN, "allowed_hosts": ["streamer.example.com"]}, "streamer.example.com", TOKEN, 200),
    ],
    ids=["configured-name", "other-name", "listen-name", "star", "token-any-host", "token-still-needed",
         "token-and-names", "token-and-its-name"],
)
async def test_configured_names_a_token_or_star_decide_other_hosts(
    dashboard: dict[str, Any], host: str, token: str | None, expected: int
) -> None:
    async with serving(config(**dashboard)) as url:
        status, _body = await get(f"{url}/api/state", host=host, token=token)
    assert status == expected


@pytest.mark.parametrize(
    ("dashboard", "offered"),
    [
        ({}, False),  # no token: every change would be refused, so the page offers none
        ({"api": {"allow_unauthenticated_loopback": True}}, True),
        ({"token": TOKEN}, True),
        ({"token": TOKEN, "api": {"enabled": False}}, False),
    ],
)
async def test_the_state_says_whether_the_page_may_offer_camera_controls(
    dashboard: dict[str, Any], offered: bool
) -> None:
    async with serving(config(**dashboard)) as url:
        status, body = await get(f"{url}/api/state", token=dashboard.get("token"))
    assert status == 200
    assert json.loads(body)["api"]["mutations"] is offered
