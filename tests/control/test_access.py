"""Who may change cameras (and identities): without a configured token nobody, unless loopback is
explicitly allowed.

The access checks come before the pipeline is involved, so these run the real HTTP server with a
control layer that has no pipeline attached: a change that gets past them meets 503 (not started).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streamer.config import StreamerConfig
from streamer.control import CameraApi, CameraControl, IdentityApi
from streamer.core.stats import StatsRegistry
from streamer.metrics.service import MetricsService
from tests.control.support import call


def config(**api: Any) -> StreamerConfig:
    return StreamerConfig.model_validate({
        "dashboard": {"port": 0, "api": api},
        "cameras": [{"name": "lobby", "url": "rtsp://admin:hunter2@10.0.0.9/lobby"}],
    })


@asynccontextmanager
async def serving(settings: StreamerConfig) -> AsyncIterator[str]:
    stats = StatsRegistry()
    control = CameraControl(settings, None)
    api = CameraApi(control, settings.dashboard, stats)
    identities = IdentityApi(None, api.refusal)  # reid off: no gallery
    service = MetricsService(settings, stats, routes=[*api.routes(), *identities.routes()])
    await service.start()
    try:
        assert service.url is not None
        yield service.url
    finally:
        await service.stop()


async def test_without_a_token_changes_are_refused_and_reading_hides_credentials() -> None:
    async with serving(config()) as url:
        listed = await call(url, "GET", "/api/cameras", headers={})
        assert listed.status == 200
        assert listed.body["cameras"][0]["name"] == "lobby"
        assert "hunter2" not in listed.text
        for method, path, body in (
            ("POST", "/api/cameras", {"name": "door", "url": "door.mp4"}),
            ("PATCH", "/api/cameras/lobby", {"max_fps": 2}),
            ("DELETE", "/api/cameras/lobby", None),
            ("POST", "/api/reload", {}),
            ("POST", "/api/identities/merge", {"ids": [1, 2]}),
            ("POST", "/api/identities/7/confirm", {}),
        ):
            refused = await call(url, method, path, body, headers={})
            assert refused.status == 403, (method, path, refused.text)
            assert "dashboard.token" in refused.body["error"]
            assert "allow_unauthenticated_loopback" in refused.body["error"]


async def test_loopback_changes_pass_when_explicitly_allowed() -> None:
    async with serving(config(allow_unauthenticated_loopback=True)) as url:
        answer = await call(url, "PATCH", "/api/cameras/lobby", {"max_fps": 2}, headers={})
        assert answer.status == 503, answer.text  # past the access checks: no pipeline here
        lobby = await call(url, "GET", "/api/cameras/lobby", headers={})
        assert lobby.body["config"]["max_fps"] is None, "a refused change changed nothing"
        form = await call(url, "PATCH", "/api/cameras/lobby", data="max_fps=2", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status == 415
        identity = await call(url, "POST", "/api/identities/7/confirm", {}, headers={})
        assert identity.status == 404 and "reid.enabled" in identity.body["error"], identity.text
        form = await call(url, "POST", "/api/identities/7/confirm", data="x=1", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status == 415
        document = await call(url, "GET", "/api/openapi.json", headers={})
        assert document.body["openapi"].startswith("3.")
        assert "CameraPatch" in document.body["components"]["schemas"]
