"""/healthz and /readyz as a supervisor sees them: the real HTTP server, no token, honest reasons.

The probes read the stats registry like every other reader, so most tests fill one by hand (server
down, models missing, cameras in given states) and ask the real server; one test runs the real
pipeline on the session's Triton.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamer.assembly import build_pipeline
from streamer.config import StreamerConfig
from streamer.core.stats import (
    CameraStats,
    IdentityStoreStats,
    ModelStats,
    ServerStats,
    StatsKind,
    StatsRegistry,
)
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.service import MetricsService

CAMERAS = ("north", "south", "east", "west")
CAMERA_PASSWORD = "hunter2"
SERVER_HOST = "triton.internal"
TOKEN = "s3cret-token-for-the-probes-test"


def health_config(ratio: float = 0.0, token: str | None = None) -> StreamerConfig:
    return StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": f"{SERVER_HOST}:8001"},
            "metrics": {"ready_min_streaming_ratio": ratio},
            "dashboard": {"port": 0, "token": token},
            "cameras": [
                {"name": name, "url": f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.9/{name}"}
                for name in CAMERAS
            ],
        }
    )


@asynccontextmanager
async def serving(config: StreamerConfig, stats: StatsRegistry) -> AsyncIterator[str]:
    """The real metrics service (monitor and HTTP server) on a free port; yields its base URL."""
    service = MetricsService(config, stats)
    await service.start()
    try:
        assert service.url is not None
        yield service.url
    finally:
        await service.stop()


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.text()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def up_server(stats: StatsRegistry) -> ServerStats:
    server = ServerStats(url=f"{SERVER_HOST}:8001", mode="external", up=True)
    stats.register(StatsKind.SERVER, "triton", server)
    stats.register(StatsKind.MODEL, "person_detector", ModelStats("person_detector", requests_in_flight=4))
    return server


async def test_healthz_answers_ok_with_the_uptime() -> None:
    async with serving(health_config(), StatsRegistry()) as url:
        status, body = await get_json(f"{url}/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["uptime_s"] >= 0


async def test_readyz_is_503_with_the_reason_until_the_server_and_its_models_are_up() -> None:
    stats = StatsRegistry()
    async with serving(health_config(), stats) as url:
        not_started = await get_json(f"{url}/readyz")

        server = ServerStats(
            url=f"{SERVER_HOST}:8001",
            mode="external",
            restarts=2,
            down_since_monotonic=time.monotonic() - 12.3,
            last_error=f"Triton at {SERVER_HOST}:8001: connection refused (dns:///{SERVER_HOST}:8001)",
        )
        stats.register(StatsKind.SERVER, "triton", server)
        down_status, down_text = await get(f"{url}/readyz")
        _, down = await get_json(f"{url}/readyz")

        server.up, server.down_since_monotonic, server.last_error = True, None, None
        no_models = await get_json(f"{url}/readyz")

        model = ModelStats("person_detector", requests_in_flight=4)
        stats.register(StatsKind.MODEL, "person_detector", model)
        ready = await get_json(f"{url}/readyz")

        server.up, server.down_since_monotonic = False, time.monotonic()
        down_again = await get_json(f"{url}/readyz")

    assert not_started[0] == 503
    assert not_started[1]["ready"] is False
    assert not_started[1]["reasons"] == ["inference server not started"]
    assert down_status == 503
    assert down["reasons"][0].startswith("inference server down for 12.")
    assert down["reasons"][0].endswith("connection refused (<url>)")
    assert down["inference"]["up"] is False and down["inference"]["restarts"] == 2
    assert SERVER_HOST not in down_text and "://" not in down_text and CAMERA_PASSWORD not in down_text
    assert no_models[0] == 503
    assert no_models[1]["reasons"] == ["inference server up, but no model is ready yet"]
    assert ready[0] == 200
    assert ready[1]["ready"] is True and ready[1]["reasons"] == []
    assert ready[1]["inference"]["models"] == ["person_detector"]
    # ratio 0: cameras the pipeline has not started yet do not block readiness
    assert ready[1]["cameras"] == {
        "streaming": 0, "total": 4, "finished": 0, "required": 0, "states": {"not started": 4}
    }
    assert down_again[0] == 503
    assert down_again[1]["reasons"][0] == "inference server down for 0.0 s: no error reported"


@pytest.mark.parametrize(
    ("ratio", "states", "ready", "required"),
    [
        (0.0, ["failed", "failed", "backoff", "stalled"], True, 0),
        (0.5, ["streaming", "streaming", "stalled", "backoff"], True, 2),
        (0.75, ["streaming", "streaming", "stalled", "backoff"], False, 3),
        (1.0, ["streaming", "streaming", "streaming", "finished"], True, 3),
        (1.0, ["streaming", "streaming", "streaming", None], False, 4),
        (1.0, ["finished", "finished", "finished", "finished"], True, 0),
    ],
    ids=["zero-never-blocks", "half-of-four", "three-quarters", "finished-left-out",
         "unregistered-counts", "all-finished"],
)
async def test_readyz_needs_the_configured_share_of_cameras_streaming(
    ratio: float, states: list[str | None], ready: bool, required: int
) -> None:
    stats = StatsRegistry()
    up_server(stats)
    for name, state in zip(CAMERAS, states, strict=True):
        if state is not None:  # None: enabled, not registered by the pipeline yet
            stats.register(StatsKind.CAMERA, name, CameraStats(name, "rtsp://***@10.0.0.9/", state=state))
    async with serving(health_config(ratio, token=TOKEN), stats) as url:
        status, body = await get_json(f"{url}/readyz")
        _status, named = await get(f"{url}/readyz", token=TOKEN)

    assert (status, body["ready"], body["cameras"]["required"]) == (200 if ready else 503, ready, required)
    assert body["cameras"]["streaming"] == states.count("streaming")
    assert body["cameras"]["finished"] == states.count("finished")
    if not ready:
        counted = [s or "not started" for s in states if s not in ("streaming", "finished")]
        idle = [f"{n} ({s or 'not started'})" for n, s in zip(CAMERAS, states, strict=True)
                if s != "streaming"]
        why = (f"{states.count('streaming')} of 4 cameras streaming, {required} needed "
               f"(metrics.ready_min_streaming_ratio {ratio:g}): ")
        by_state = ", ".join(f"{counted.count(s)} {s}" for s in sorted(set(counted)))
        assert body["reasons"] == [why + by_state], "without the token: counts, never names"
        assert json.loads(named)["reasons"] == [why + ", ".join(idle)], "with the token: names"
    assert not any(name in json.dumps(body) for name in CAMERAS)


async def test_a_shared_identity_store_down_degrades_readiness_without_failing_it() -> None:
    stats = StatsRegistry()
    up_server(stats)
    store = IdentityStoreStats("redis", "redis.internal:6379/0", "north", connected=True)
    stats.register(StatsKind.IDENTITY_STORE, "identities", store)
    async with serving(health_config(), stats) as url:
        connected = await get_json(f"{url}/readyz")
        store.connected, store.down_since_monotonic, store.queued = False, time.monotonic() - 7.0, 12
        store.last_error = "Error -2 connecting to redis.internal:6379. Name or service not known."
        status, text = await get(f"{url}/readyz")
        _, down = await get_json(f"{url}/readyz")
        _, metrics = await get(f"{url}/metrics")

    assert "streamer_identity_store_connected 0.0" in metrics.splitlines()
    assert "streamer_identity_store_queued 12.0" in metrics.splitlines()
    assert connected[0] == 200 and connected[1]["degraded"] == []
    assert connected[1]["identity_store"]["connected"] is True
    assert status == 200 and down["ready"] is True and down["reasons"] == [], "cameras still run"
    (degraded,) = down["degraded"]
    assert degraded.startswith("identity store down for 7.")
    assert degraded.endswith("global ids are provisional (matched in this instance only)")
    assert down["identity_store"] == {"connected": False, "down_for_s": pytest.approx(7.0, abs=1),
                                      "queued": 12, "dropped": 0}
    assert "redis.internal" not in text, "probes answer without a token: no address"


async def test_probes_answer_without_the_token_while_everything_else_requires_it() -> None:
    stats = StatsRegistry()
    async with serving(health_config(token=TOKEN), stats) as url:
        health = await get(f"{url}/healthz")
        not_ready = await get(f"{url}/readyz")
        up_server(stats)
        ready = await get(f"{url}/readyz")
        state_without = await get(f"{url}/api/state")
        state_with = await get(f"{url}/api/state", token=TOKEN)
        metrics_without = await get(f"{url}/metrics")
        near_misses = [await get(f"{url}{path}") for path in ("/healthz/x", "/readyz.json", "/readyz/")]

    assert health[0] == 200 and not_ready[0] == 503 and ready[0] == 200
    assert TOKEN not in health[1] + not_ready[1] + ready[1]
    assert state_without[0] == 401 and state_with[0] == 200
    assert metrics_without[0] == 401
    assert [status for status, _ in near_misses] == [401, 401, 401], "only the exact paths are open"


async def test_readyz_follows_the_real_pipeline_and_its_triton(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path
) -> None:
    config = StreamerConfig.model_validate(
        {
            "triton": {"mode": "external", "url": embedded_triton.grpc_url},
            "publishing": {"jsonl": {"enabled": False}},
            "dashboard": {"port": 0},
            "cameras": [{"name": "lobby", "url": str(sample_clip), "loop": True}],
        }
    )
    stats = StatsRegistry()
    pipeline = build_pipeline(config, registry=stats)
    async with serving(config, stats) as url:
        try:
            before = await get_json(f"{url}/readyz")
            await pipeline.start()
            running = await get_json(f"{url}/readyz")
        finally:
            await pipeline.stop()
        stopped = await get_json(f"{url}/readyz")

    assert before[0] == 503 and before[1]["reasons"] == ["inference server not started"]
    assert running[0] == 200, running[1]
    assert running[1]["inference"]["up"] is True and "person_detector" in running[1]["inference"]["models"]
    assert stopped[0] == 503 and stopped[1]["reasons"][0].startswith("inference server down")
